package blend

import (
	"cmp"
	"slices"

	"github.com/kvserve/kvserve/kvcache"
)

// deviation returns, for each token of a recompute pass, how far its fresh
// key and value moved from the cached ones: Σ over KV heads of
// ‖k − k̃‖² + ‖v − ṽ‖² (CacheBlend's KV deviation). fresh tokens (no
// cached KV) get +Inf-free 0; callers keep them anyway.
func deviation(cache *kvcache.Seq, layer int, pos []int, keys, values []float32, isFresh []bool) []float32 {
	hd, kvh := cache.HeadDim(), cache.KVHeads()
	kvd := hd * kvh
	dev := make([]float32, len(pos))
	old := make([]float32, hd)
	for t, p := range pos {
		if isFresh[p] {
			continue
		}
		var d float32
		for g := range kvh {
			view := cache.View(layer, g)
			view.Key(p, old)
			d += sqDist(keys[t*kvd+g*hd:t*kvd+(g+1)*hd], old)
			view.Value(p, old)
			d += sqDist(values[t*kvd+g*hd:t*kvd+(g+1)*hd], old)
		}
		dev[t] = d
	}
	return dev
}

func sqDist(a, b []float32) float32 {
	var s float32
	for i := range a {
		d := a[i] - b[i]
		s += d * d
	}
	return s
}

// topK returns the indices of cands (indices into dev) with the k largest
// deviations, in any order.
func topK(cands []int, dev []float32, k int) []int {
	if k >= len(cands) {
		return cands
	}
	c := slices.Clone(cands)
	slices.SortFunc(c, func(a, b int) int { return cmp.Compare(dev[b], dev[a]) })
	return c[:max(0, k)]
}

// all returns 0 … n−1.
func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// freshMask marks the prompt's fresh tokens.
func freshMask(n int, fresh []int) []bool {
	m := make([]bool, n)
	for _, j := range fresh {
		m[j] = true
	}
	return m
}
