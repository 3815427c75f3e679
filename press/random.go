package press

import "math/rand/v2"

// Random drops tokens uniformly at random: the floor any method must beat.
type Random struct{ Seed uint64 }

func init() { register("random", func() (Scorer, Budget) { return Random{Seed: 42}, Uniform{} }) }

// Needs implements Scorer: nothing.
func (Random) Needs() Needs { return Needs{} }

// Score implements Scorer.
func (p Random) Score(s *State) [][]float32 {
	r := rand.New(rand.NewPCG(p.Seed, uint64(s.Layer)))
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = make([]float32, s.Tokens(g))
		for j := range out[g] {
			out[g][j] = r.Float32()
		}
	}
	return out
}
