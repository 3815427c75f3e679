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

// padMax sets every score at index ≥ from to the largest score below it, so
// the budget keeps those tokens (the observation window) whatever else.
func padMax(scores []float32, from int) {
	if from <= 0 || from >= len(scores) {
		return
	}
	m := scores[0]
	for _, v := range scores[:from] {
		m = max(m, v)
	}
	for j := from; j < len(scores); j++ {
		scores[j] = m
	}
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
