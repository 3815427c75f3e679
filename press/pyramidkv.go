package press

import "math"

// PyramidKV gives lower layers larger budgets than upper layers, falling
// linearly, and ranks tokens by SnapKV's scores. Cai et al., "PyramidKV:
// Dynamic KV Cache Compression based on Pyramidal Information Funneling"
// (arXiv:2406.02069). The budgets follow kvpress: with B = n·(1−ratio),
// the top layer keeps B/β, the bottom layer 2B − B/β, linear in between, so
// the mean is B; when that schedule does not fit (n < bottom budget, or the
// top budget below the window) every layer keeps B, as SnapKV would.
type PyramidKV struct {
	Window int
	Beta   float64
}

func init() {
	register("pyramidkv", func() (Scorer, Budget) {
		return SnapKV{Window: 64, Kernel: 5}, PyramidKV{Window: 64, Beta: 20}
	})
}

// Select implements Budget.
func (p PyramidKV) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	out := make([][]int, len(scores))
	for g, s := range scores {
		n := float64(len(s))
		b := n * (1 - ratio)
		lo := b / p.Beta
		hi := 2*b - lo
		keep := int(math.Round(b))
		if layers > 1 && n >= hi && lo >= float64(p.Window) {
			keep = int(math.Round(hi - float64(layer)*(hi-lo)/float64(layers-1)))
		}
		out[g] = topK(s, keep)
	}
	return out
}
