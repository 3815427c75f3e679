package press

// SnapKV scores each token by the attention it receives from the last
// Window queries of the prompt, averaged over the window and the query
// heads of the GQA group, smoothed by average pooling; the window itself is
// always kept. Li et al., "SnapKV: LLM Knows What You are Looking for
// Before Generation", NeurIPS 2024 (arXiv:2404.14469). In query-agnostic
// use the window is the end of the context, not the question.
type SnapKV struct{ Window, Kernel int }

func init() {
	register("snapkv", func() (Scorer, Budget) { return SnapKV{Window: 64, Kernel: 5}, Uniform{} })
}

// Needs implements Scorer: the window's queries.
func (p SnapKV) Needs() Needs { return Needs{Window: p.Window} }

// Score implements Scorer.
func (p SnapKV) Score(s *State) [][]float32 {
	group := s.Heads / s.KVHeads
	out := make([][]float32, s.KVHeads)
	for g := range out {
		n := s.Tokens(g)
		win := min(p.Window, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
		if n <= win {
			out[g] = make([]float32, n) // nothing outside the window to judge
			continue
		}
		acc := make([]float32, n-win)
		for hh := g * group; hh < (g+1)*group; hh++ {
			probs := windowAttention(s, hh, win)
			head := make([]float32, n-win)
			for _, row := range probs {
				for j := range head {
					head[j] += row[j] / float32(len(probs))
				}
			}
			for j, v := range avgPool(head, p.Kernel) {
				acc[j] += v / float32(group)
			}
		}
		out[g] = append(acc, make([]float32, win)...)
		padMax(out[g], n-win)
	}
	return padLayer(out)
}
