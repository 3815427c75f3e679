package press

// ObservedAttention (H2O's heavy hitters) keeps the tokens that received
// the most attention during prefill, averaged over the queries that could
// see them and over the query heads of the GQA group. Zhang et al., "H2O:
// Heavy-Hitter Oracle for Efficient Generative Inference of Large Language
// Models", NeurIPS 2023 (arXiv:2306.14048). The statistic is accumulated
// by the forward pass (model.Observer.Attention), so no attention matrix
// is ever materialised.
type ObservedAttention struct{}

func init() {
	register("observed_attention", func() (Scorer, Budget) { return ObservedAttention{}, Uniform{} })
}

// Needs implements Scorer: attention sums.
func (ObservedAttention) Needs() Needs { return Needs{Attention: true} }

// Score implements Scorer.
func (ObservedAttention) Score(s *State) [][]float32 {
	group := float32(s.Heads / s.KVHeads)
	out := make([][]float32, s.KVHeads)
	for g := range out {
		n := s.Tokens(g)
		sum := s.Obs.AttnSum[s.Layer][g]
		out[g] = make([]float32, n)
		for j := range n {
			seen := float32(n - j) // queries at or after token j (causal)
			out[g][j] = sum[j] / group / seen
		}
	}
	return out
}
