package press

import (
	"math"

	"github.com/kvserve/kvserve/compute"
)

// windowAttention returns, for query head hh, the attention of each of the
// last win recorded queries (post-RoPE) over head g's tokens, causal by
// original position: probs[w][j]. It is the shared core of SnapKV, TOVA
// and their relatives.
func windowAttention(s *State, hh, win int) [][]float32 {
	g := hh / (s.Heads / s.KVHeads)
	d := s.HeadDim
	q := s.Obs.Queries[s.Layer]
	win = min(win, len(q)/(s.Heads*d))
	q = q[len(q)-win*s.Heads*d:]
	n := s.Tokens(g)
	out := make([][]float32, win)
	// The window is the last win positions recorded; its positions are
	// the last win of the sequence.
	lastPos := 0
	for _, p := range s.Positions[g] {
		lastPos = max(lastPos, p)
	}
	for w := range win {
		pos := lastPos - (win - 1 - w)
		qw := q[(w*s.Heads+hh)*d : (w*s.Heads+hh+1)*d]
		row := make([]float32, n)
		for j := range n {
			if s.Positions[g][j] > pos {
				row[j] = float32(math.Inf(-1))
				continue
			}
			row[j] = compute.Dot(qw, s.Key(g, j)) * s.AttnScale
		}
		compute.Softmax(row)
		out[w] = row
	}
	return out
}

// padMax marks every score at index ≥ from as one the budget must keep
// (the observation window); padLayer, run once the layer's heads are
// scored, turns the marks into numbers.
func padMax(scores []float32, from int) {
	if from < 0 || from >= len(scores) {
		return
	}
	for j := from; j < len(scores); j++ {
		scores[j] = float32(math.Inf(1))
	}
}

// padLayer replaces padMax's marks in every head of a layer by the
// layer's largest unmarked score + 1, as kvpress pads its windows (global
// max + 1): a budget split across heads (AdaKV, CAKE) then takes every
// marked token before any other, while the scores stay finite. It returns
// out.
func padLayer(out [][]float32) [][]float32 {
	top, any := float32(0), false
	for _, sc := range out {
		for _, v := range sc {
			if !math.IsInf(float64(v), 1) && (!any || v > top) {
				top, any = v, true
			}
		}
	}
	for _, sc := range out {
		for j, v := range sc {
			if math.IsInf(float64(v), 1) {
				sc[j] = top + 1
			}
		}
	}
	return out
}

// avgPool smooths x with a centred moving average of odd width k, counting
// the zero padding at the ends (as PyTorch's avg_pool1d does by default).
func avgPool(x []float32, k int) []float32 {
	out := make([]float32, len(x))
	r := k / 2
	for i := range x {
		var s float32
		for j := i - r; j <= i+r; j++ {
			if j >= 0 && j < len(x) {
				s += x[j]
			}
		}
		out[i] = s / float32(k)
	}
	return out
}
