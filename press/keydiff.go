package press

import "math"

// KeyDiff keeps the keys least similar to the head's mean key direction:
// distinct keys carry information the others do not. Park et al.,
// "KeyDiff: Key Similarity-Based KV Cache Eviction for Long-Context LLM
// Inference in Resource-Constrained Environments" (arXiv:2504.15364).
// The anchor is the mean of the L2-normalised keys, as in kvpress.
type KeyDiff struct{}

func init() { register("keydiff", func() (Scorer, Budget) { return KeyDiff{}, Uniform{} }) }

// Needs implements Scorer: nothing beyond the cache.
func (KeyDiff) Needs() Needs { return Needs{} }

// Score is −cos(k, anchor).
func (KeyDiff) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	d := s.HeadDim
	for g := range out {
		n := s.Tokens(g)
		anchor := make([]float64, d)
		for j := range n {
			k := s.Key(g, j)
			inv := 1 / max(float64(norm(k)), 1e-12)
			for i, v := range k {
				anchor[i] += float64(v) * inv / float64(n)
			}
		}
		var an float64
		for _, v := range anchor {
			an += v * v
		}
		an = max(math.Sqrt(an), 1e-8)
		out[g] = make([]float32, n)
		for j := range n {
			k := s.Key(g, j)
			var dot float64
			for i, v := range k {
				dot += float64(v) * anchor[i]
			}
			out[g][j] = float32(-dot / (max(float64(norm(k)), 1e-8) * an))
		}
	}
	return out
}
