package press

// TOVA keeps the tokens the last token attends to most, averaged over all
// query heads. Oren et al., "Transformers are Multi-State RNNs"
// (arXiv:2401.06104). As in kvpress, one score serves every KV head and
// the last token is always kept.
type TOVA struct{}

func init() { register("tova", func() (Scorer, Budget) { return TOVA{}, Uniform{} }) }

// Needs implements Scorer: the last query.
func (TOVA) Needs() Needs { return Needs{Window: 1} }

// Score implements Scorer.
func (TOVA) Score(s *State) [][]float32 {
	n := s.Tokens(0)
	mean := make([]float32, n)
	for hh := range s.Heads {
		row := windowAttention(s, hh, 1)[0]
		for j := range mean {
			mean[j] += row[j] / float32(s.Heads)
		}
	}
	padMax(mean, n-1)
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = append([]float32(nil), mean...)
	}
	return out
}
