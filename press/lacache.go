package press

import (
	"math"
	"sort"
)

// Ladder keeps, in every layer, the first Sink tokens, the last Recent
// tokens and, of the tokens between them, a ladder: the middle is cut into
// rungs of B tokens, each layer keeps about Run consecutive tokens of every
// rung, and the kept run starts later in the rung the deeper the layer, so
// that each token is held by a band of consecutive layers and the layers
// together cover the whole middle. Shi et al., "LaCache: Ladder-Shaped KV
// Caching for Efficient Long-Context Modeling of Large Language Models",
// ICML 2025 (arXiv:2507.14204). It ignores the scores (use Positional).
//
// The span formula (ours; the paper sets span and overlap in layers and
// fills the rest of a fixed cache): with k = ⌊n·(1 − ratio)⌋ tokens per
// head, s = min(Sink, k), r = min(Recent, k − s), M = n − s − r middle
// tokens of which m = k − s − r are kept, the keep fraction f = m/M and
// rung length B = max(1, round(Run/f)); middle token i (counted from the
// first after the sinks) is kept in layer l of L iff it is among the m
// middle tokens with the smallest circular distance between
// ((i mod B) + ½)/B and (l + ½)/L (ties: the later token). Each token is
// thus kept by about f·L consecutive layers (wrapping from the last layer
// to the first), and every layer keeps exactly k tokens. lacache registers
// Sink 4, Recent 64 and Run 1: Run 1 is the reference code's finest ladder
// (overlap 0), 4 sinks its perplexity setting (it uses 128 for needle
// tests), the 64-token window our choice. The decode-time iterative
// compaction of the paper is the decode-time wrapper's job, not this one.
type Ladder struct{ Sink, Recent, Run int }

// Positional scores nothing: for budgets that choose by position alone.
type Positional struct{}

// Needs implements Scorer: nothing.
func (Positional) Needs() Needs { return Needs{} }

// Score implements Scorer: zeros.
func (Positional) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = make([]float32, s.Tokens(g))
	}
	return out
}

func init() {
	register("lacache", func() (Scorer, Budget) { return Positional{}, Ladder{Sink: 4, Recent: 64, Run: 1} })
}

// Select implements Budget.
func (p Ladder) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	out := make([][]int, len(scores))
	for g, s := range scores {
		out[g] = p.keep(len(s), layer, layers, ratio)
	}
	return out
}

func (p Ladder) keep(n, layer, layers int, ratio float64) []int {
	k := int(float64(n) * (1 - ratio))
	s := min(p.Sink, k)
	r := min(p.Recent, k-s)
	M, m := n-s-r, k-s-r
	idx := make([]int, 0, k)
	for j := range s {
		idx = append(idx, j)
	}
	if m > 0 {
		B := max(1, int(math.Round(float64(max(1, p.Run))*float64(M)/float64(m))))
		phase := (float64(layer) + 0.5) / float64(max(1, layers))
		dist := make([]float64, M)
		order := make([]int, M)
		for i := range M {
			d := math.Abs((float64(i%B)+0.5)/float64(B) - phase)
			dist[i] = min(d, 1-d)
			order[i] = M - 1 - i // later tokens first among equals
		}
		sort.SliceStable(order, func(a, b int) bool { return dist[order[a]] < dist[order[b]] })
		mid := order[:m]
		sort.Ints(mid)
		for _, i := range mid {
			idx = append(idx, s+i)
		}
	}
	for j := n - r; j < n; j++ {
		idx = append(idx, j)
	}
	return idx
}
