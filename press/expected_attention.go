package press

import (
	"math"

	"github.com/kvserve/kvserve/compute"
)

// ExpectedAttention scores each token by the attention that future queries
// are expected to give it: the prompt's pre-RoPE queries are summarised by
// their mean μ and covariance Σ per head, rotated by the average RoPE of
// the next Future positions, and a key k then expects exp(μ·k/√d +
// kᵀΣk/(2d)) (the Gaussian moment-generating function), normalised over
// the tokens, averaged over the GQA group and weighted by ‖v‖. Devoto et
// al., "Expected Attention: KV Cache Compression by Estimating Attention
// from Future Queries Distribution" (arXiv:2510.00636), as kvpress
// implements it: the first Sink tokens are kept (scored above every other
// token of the layer, so no split across heads evicts them) and left out of
// the statistics, and Σ divides by the number of queries.
type ExpectedAttention struct {
	Future int
	Sink   int
}

func init() {
	register("expected_attention", func() (Scorer, Budget) { return ExpectedAttention{Future: 512, Sink: 4}, Uniform{} })
}

// Needs implements Scorer: the mean and covariance of the prompt's
// pre-RoPE queries after the sinks — kept by the forward pass as sums, not
// as the queries (a d × d matrix per query head and layer).
func (p ExpectedAttention) Needs() Needs { return Needs{QueryStats: true, StatsFrom: p.Sink} }

// Score implements Scorer.
func (p ExpectedAttention) Score(s *State) [][]float32 {
	d := s.HeadDim
	half := d / 2
	n := s.Tokens(0) // the prompt's length: its queries were all recorded
	// Average rotation over the next Future positions.
	cbar, sbar := make([]float64, half), make([]float64, half)
	for i, f := range s.InvFreq {
		for pos := n; pos < n+p.Future; pos++ {
			a := float64(float32(pos) * f)
			cbar[i] += math.Cos(a) / float64(p.Future)
			sbar[i] += math.Sin(a) / float64(p.Future)
		}
	}
	rotate := func(x []float64) []float64 { // R·x with R = C̄ + S̄·rotate_half
		y := make([]float64, d)
		for i := range half {
			y[i] = cbar[i]*x[i] - sbar[i]*x[i+half]
			y[i+half] = cbar[i]*x[i+half] + sbar[i]*x[i]
		}
		return y
	}
	group := s.Heads / s.KVHeads
	out := make([][]float32, s.KVHeads)
	for g := range out {
		nk := s.Tokens(g)
		sink := min(p.Sink, nk)
		acc := make([]float32, nk-sink)
		for hh := g * group; hh < (g+1)*group; hh++ {
			mu, cov := p.moments(s, hh)
			mu = rotate(mu)
			// cov ← R·cov·Rᵀ: rotate columns, then rows.
			for r := range d {
				cov[r] = rotate(cov[r])
			}
			for c := range d {
				col := make([]float64, d)
				for r := range d {
					col[r] = cov[r][c]
				}
				col = rotate(col)
				for r := range d {
					cov[r][c] = col[r]
				}
			}
			sc := make([]float32, nk-sink)
			for j := sink; j < nk; j++ {
				k := s.Key(g, j)
				var lin, quad float64
				for a := range d {
					ka := float64(k[a])
					lin += mu[a] * ka
					var row float64
					for b := range d {
						row += cov[a][b] * float64(k[b])
					}
					quad += ka * row
				}
				sc[j-sink] = float32(lin/math.Sqrt(float64(d)) + quad/float64(d)/2)
			}
			compute.Softmax(sc)
			for j, v := range sc {
				acc[j] += v / float32(group)
			}
		}
		scores := make([]float32, nk)
		for j := sink; j < nk; j++ {
			scores[j] = acc[j-sink] * norm(s.Value(g, j))
		}
		for j := range sink {
			scores[j] = float32(math.Inf(1)) // kept: padLayer
		}
		out[g] = scores
	}
	return padLayer(out)
}

// moments returns the mean and covariance of query head hh's pre-RoPE
// queries: from the forward pass's sums, or computed from recorded
// queries when those were recorded instead (a hand-made Observer).
func (p ExpectedAttention) moments(s *State, hh int) ([]float64, [][]float64) {
	d := s.HeadDim
	if s.Obs.QCount != nil {
		mu, cov, _ := s.Obs.QueryMoments(s.Layer, hh, d)
		return mu, cov
	}
	qs := s.Obs.QueriesPre[s.Layer]
	return queryStats(qs, len(qs)/(s.Heads*d), s.Heads, hh, d, p.Sink)
}

// queryStats returns the mean and covariance (divided by the count) of
// query head hh over recorded tokens skip … nq−1.
func queryStats(qs []float32, nq, heads, hh, d, skip int) ([]float64, [][]float64) {
	mu := make([]float64, d)
	cov := make([][]float64, d)
	for i := range cov {
		cov[i] = make([]float64, d)
	}
	cnt := nq - skip
	if cnt <= 0 {
		return mu, cov
	}
	row := func(t int) []float32 { return qs[(t*heads+hh)*d : (t*heads+hh+1)*d] }
	for t := skip; t < nq; t++ {
		for i, v := range row(t) {
			mu[i] += float64(v) / float64(cnt)
		}
	}
	x := make([]float64, d)
	for t := skip; t < nq; t++ {
		for i, v := range row(t) {
			x[i] = float64(v) - mu[i]
		}
		for a := range d {
			xa := x[a] / float64(cnt)
			ca := cov[a]
			for b := range d {
				ca[b] += xa * x[b]
			}
		}
	}
	return mu, cov
}
