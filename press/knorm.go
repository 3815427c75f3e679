package press

import "math"

// Knorm keeps the tokens whose keys have the smallest L2 norm. Devoto et
// al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache
// Compression", EMNLP 2024 (arXiv:2406.11430).
type Knorm struct{}

func init() { register("knorm", func() (Scorer, Budget) { return Knorm{}, Uniform{} }) }

// Needs implements Scorer: nothing beyond the cache.
func (Knorm) Needs() Needs { return Needs{} }

// Score is −‖k‖₂.
func (Knorm) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = make([]float32, s.Tokens(g))
		for j := range out[g] {
			out[g][j] = -norm(s.Key(g, j))
		}
	}
	return out
}

func norm(x []float32) float32 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	return float32(math.Sqrt(ss))
}
