package model

import (
	"math"

	"github.com/kvserve/kvserve/kvcache"

	"github.com/kvserve/kvserve/compute"
)

// Observer asks a forward pass to record what KV-cache compression methods
// look at. Set the request fields, attach it to a Step (or pass it to
// ForwardObserved), and read the filled fields after the pass. Several
// passes over one sequence (chunked prefill) accumulate into one Observer.
type Observer struct {
	// From is the first position whose queries (and hidden states) are
	// recorded; tokens before it only contribute attention statistics.
	From int
	// PreRope also records queries before RoPE (after q-norm).
	PreRope bool
	// Hidden records each layer's input hidden states from From on.
	Hidden bool
	// Attention accumulates, per layer and KV head, the attention each
	// cached token receives from every query, summed over the query heads
	// of the group (H2O's statistic).
	Attention bool
	// QueryStats accumulates, per layer and query head, the count, sum and
	// sum of outer products of the pre-RoPE queries at positions ≥
	// StatsFrom — their mean and covariance (QueryMoments) in O(d²) memory
	// instead of every query (ExpectedAttention's statistics).
	QueryStats bool
	StatsFrom  int

	// Queries[layer] holds post-RoPE queries from From on, token-major:
	// token t's head h is at (t·Heads + h)·HeadDim.
	Queries [][]float32
	// QueriesPre is Queries before RoPE, when PreRope is set.
	QueriesPre [][]float32
	// HiddenStates[layer] holds layer inputs from From on, token-major.
	HiddenStates [][]float32
	// AttnSum[layer][kvHead][j] is the attention summed into cached token j
	// (an index into the head's view at the end of the pass).
	AttnSum [][][]float32
	// QCount[layer] queries were summed into QSum[layer][h·HeadDim + i]
	// and QOuter[layer][(h·HeadDim + i)·HeadDim + j], when QueryStats.
	QCount       []int
	QSum, QOuter [][]float64
}

// QueryMoments returns the mean and the covariance (divided by the count)
// of query head h's pre-RoPE queries in layer l, and their count (0, with
// zeros, when none were summed).
func (o *Observer) QueryMoments(l, h, d int) ([]float64, [][]float64, int) {
	mu := make([]float64, d)
	cov := make([][]float64, d)
	for i := range cov {
		cov[i] = make([]float64, d)
	}
	if l >= len(o.QCount) || o.QCount[l] == 0 {
		return mu, cov, 0
	}
	n := float64(o.QCount[l])
	for i := range d {
		mu[i] = o.QSum[l][h*d+i] / n
	}
	for i := range d {
		row := o.QOuter[l][(h*d+i)*d : (h*d+i+1)*d]
		for j := range d {
			cov[i][j] = row[j]/n - mu[i]*mu[j]
		}
	}
	return mu, cov, o.QCount[l]
}

// DropLayer forgets the queries and hidden states recorded of layer l,
// once nothing will read them (a layer-by-layer prefill that compressed
// the layer). The attention sums, one float per token and KV head, stay:
// D2O sizes later layers' budgets with earlier layers' sums.
func (o *Observer) DropLayer(l int) {
	if o.Queries == nil || l < 0 || l >= len(o.Queries) {
		return
	}
	o.Queries[l], o.QueriesPre[l], o.HiddenStates[l] = nil, nil, nil
}

func (o *Observer) init(c *Config) {
	if o.Queries != nil {
		return
	}
	o.Queries = make([][]float32, c.Layers)
	o.QueriesPre = make([][]float32, c.Layers)
	o.HiddenStates = make([][]float32, c.Layers)
	o.AttnSum = make([][][]float32, c.Layers)
	for l := range o.AttnSum {
		o.AttnSum[l] = make([][]float32, c.KVHeads)
	}
	if o.QueryStats {
		hd := c.Heads * c.HeadDim
		o.QCount = make([]int, c.Layers)
		o.QSum, o.QOuter = make([][]float64, c.Layers), make([][]float64, c.Layers)
		for l := range o.QSum {
			o.QSum[l], o.QOuter[l] = make([]float64, hd), make([]float64, hd*c.HeadDim)
		}
	}
}

// ForwardObserved is Forward with an Observer attached.
func (m *Model) ForwardObserved(cache *kvcache.Seq, tokens []int, out Output, obs *Observer) ([]float32, error) {
	return m.forward(cache, tokens, out, obs)
}

// recordInputs stores the layer input (hidden) of observed tokens; called
// before the layer runs.
func (m *Model) recordHidden(steps []Step, li, n int) {
	h := m.Config.HiddenSize
	for t := range n {
		o := steps[m.ws.seq[t]].Observe
		if o == nil || !o.Hidden || m.ws.pos[t] < o.From {
			continue
		}
		o.init(m.Config)
		o.HiddenStates[li] = append(o.HiddenStates[li], m.ws.x[t*h:(t+1)*h]...)
	}
}

// recordQueries stores post-RoPE queries of observed tokens.
func (m *Model) recordQueries(steps []Step, li, n int) {
	qd := m.Config.Heads * m.Config.HeadDim
	for t := range n {
		o := steps[m.ws.seq[t]].Observe
		if o == nil || m.ws.pos[t] < o.From {
			continue
		}
		o.init(m.Config)
		o.Queries[li] = append(o.Queries[li], m.ws.q[t*qd:(t+1)*qd]...)
	}
}

// recordPreRope stores one token's pre-RoPE query heads, or adds them to
// the query statistics.
func (m *Model) recordPreRope(steps []Step, li, t int, q []float32) {
	o := steps[m.ws.seq[t]].Observe
	if o == nil {
		return
	}
	if o.PreRope && m.ws.pos[t] >= o.From {
		o.init(m.Config)
		o.QueriesPre[li] = append(o.QueriesPre[li], q...)
	}
	if o.QueryStats && m.ws.pos[t] >= o.StatsFrom {
		o.init(m.Config)
		d := m.Config.HeadDim
		o.QCount[li]++
		sum, outer := o.QSum[li], o.QOuter[li]
		for i, x := range q {
			sum[i] += float64(x)
		}
		for h := range m.Config.Heads {
			qh := q[h*d : (h+1)*d]
			for i, a := range qh {
				row := outer[(h*d+i)*d : (h*d+i+1)*d]
				fa := float64(a)
				for j, b := range qh {
					row[j] += fa * float64(b)
				}
			}
		}
	}
}

// recordAttention recomputes this layer's attention probabilities for the
// observed steps and adds them to AttnSum, one KV head per worker so that
// no two workers write the same sums.
func (m *Model) recordAttention(steps []Step, li, n int) {
	c := m.Config
	hd, qd := c.HeadDim, c.Heads*c.HeadDim
	group := c.Heads / c.KVHeads
	window := 0
	if c.Sliding[li] {
		window = c.SlidingWindow
	}
	for si := range steps {
		o := steps[si].Observe
		if o == nil || !o.Attention {
			continue
		}
		o.init(c)
		cache := steps[si].Cache
		m.pool.For(c.KVHeads, 1, func(worker, lo, hi int) {
			for g := lo; g < hi; g++ {
				kv := cache.View(li, g)
				sum := o.AttnSum[li][g]
				if len(sum) < kv.Len() {
					sum = append(sum, make([]float32, kv.Len()-len(sum))...)
					o.AttnSum[li][g] = sum
				}
				scores := m.pool.Scratch(worker, kv.Len())
				for t := range n {
					if m.ws.seq[t] != si {
						continue
					}
					pos := m.ws.pos[t]
					from := 0
					if window > 0 {
						from = pos - window + 1
					}
					klo, khi := kv.Span(from, pos)
					s := scores[:khi-klo]
					for hh := g * group; hh < (g+1)*group; hh++ {
						q := m.ws.q[t*qd+hh*hd : t*qd+(hh+1)*hd]
						kv.Scores(s, q, klo, khi, c.AttnScale)
						if sc := c.AttnSoftcap; sc > 0 {
							for j, v := range s {
								s[j] = sc * float32(math.Tanh(float64(v/sc)))
							}
						}
						compute.Softmax(s)
						for j, p := range s {
							sum[klo+j] += p
						}
					}
				}
			}
		})
	}
}
