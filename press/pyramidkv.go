package press

import "math"

// PyramidKV gives lower layers larger budgets than upper layers, falling
// linearly, and ranks tokens by SnapKV's scores. Cai et al., "PyramidKV:
// Dynamic KV Cache Compression based on Pyramidal Information Funneling"
// (arXiv:2406.02069). The budgets are kvpress's (after KVCache-Factory):
// with B = n·(1−ratio) for n tokens, the top layer keeps B/β and the
// bottom layer 2B − B/β, linear in between, so the mean is B. The bottom
// budget is clamped to n − Window (the top one rising to match, 2B − that),
// and when the schedule still does not fit (top budget below Window) every
// layer keeps B, as SnapKV would. Budgets are rounded half to even, as
// Python's round.
type PyramidKV struct {
	Window int
	Beta   float64
}

func init() {
	register("pyramidkv", func() (Scorer, Budget) {
		return SnapKV{Window: 64, Kernel: 5}, PyramidKV{Window: 64, Beta: 20}
	})
}

// LayerBudget returns how many of n tokens layer keeps out of layers.
func (p PyramidKV) LayerBudget(n, layer, layers int, ratio float64) int {
	b := float64(n) * (1 - ratio)
	w := float64(p.Window)
	lo := b / p.Beta
	hi := 2*b - lo
	if hi >= float64(n)-w {
		hi = float64(n) - w
		lo = 2*b - hi
	}
	if layers < 2 || !(float64(n) >= hi && hi >= lo && lo >= w) {
		return int(math.RoundToEven(b))
	}
	step := (hi - lo) / float64(layers-1)
	return int(math.RoundToEven(hi - float64(layer)*step))
}

// Select implements Budget.
func (p PyramidKV) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	out := make([][]int, len(scores))
	for g, s := range scores {
		out[g] = topK(s, p.LayerBudget(len(s), layer, layers, ratio))
	}
	return out
}
