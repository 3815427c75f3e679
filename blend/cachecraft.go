package blend

import (
	"math"
	"slices"
)

// CacheCraft decides per document how much of it to recompute, from how
// its context in this prompt differs from the one it was cached in, after
// Cache-Craft (Agarwal et al., SIGMOD 2025, arXiv:2502.15734).
//
// A document right after the prompt's head sits in exactly the context it
// was computed in: its KV is exact and nothing of it is recomputed (the
// paper's prefix-overlap rule at full overlap). Every other document gets a
// share of the budget — Ratio of all reused tokens — in proportion to how
// far its context moved its KV: its mean deviation at CheckLayer, the
// online stand-in for the paper's cache-context impact, which the paper
// stores with each chunk from the request it was cached in (our chunks
// are computed on their own, so that measure has nothing to observe).
// Within a document the tokens with the largest deviation are chosen, and
// the set is fixed from CheckLayer on: one decision per chunk, no
// narrowing. Zero fields take the defaults: Ratio 0.15, CheckLayer 1.
type CacheCraft struct {
	Ratio      float64
	CheckLayer int
}

// Name returns "cachecraft".
func (CacheCraft) Name() string { return "cachecraft" }

// Prefill reuses the documents and recomputes each one's share.
func (c CacheCraft) Prefill(b *Blender, salt string, p Prompt) (*Result, error) {
	if c.Ratio <= 0 {
		c.Ratio = 0.15
	}
	if c.CheckLayer <= 0 {
		c.CheckLayer = 1
	}
	a, err := b.assemble(salt, p, nil)
	if err != nil {
		return nil, err
	}
	isFresh := freshMask(len(a.tokens), a.fresh)
	sel := func(layer int, pos []int, keys, values []float32) []int {
		if layer != c.CheckLayer {
			return all(len(pos))
		}
		dev := deviation(a.cache, layer, pos, keys, values, isFresh)
		// pos is every token here (nothing narrowed before the check), so
		// index t is position t.
		var keep []int
		for t, q := range pos {
			if isFresh[q] {
				keep = append(keep, t)
			}
		}
		weight := make([]float64, len(a.docs))
		var sum float64
		for i, d := range a.docs {
			if d.atHome {
				continue
			}
			var s float64
			for t := d.start; t < d.end; t++ {
				s += float64(dev[t])
			}
			weight[i] = s / float64(d.end-d.start)
			sum += weight[i]
		}
		budget := c.Ratio * float64(a.placed)
		a.res.Recomputed = 0
		for i, d := range a.docs {
			if weight[i] == 0 || sum == 0 {
				continue
			}
			k := min(d.end-d.start, int(math.Round(budget*weight[i]/sum)))
			chosen := topK(all(d.end-d.start), dev[d.start:d.end], k)
			for _, j := range chosen {
				keep = append(keep, d.start+j)
			}
			a.res.Recomputed += len(chosen)
		}
		slices.Sort(keep)
		return keep
	}
	return b.finish(a, all(len(a.tokens)), sel)
}
