package press

import (
	"math"
	"slices"
	"sort"
)

// CompressKV chooses the tokens to keep from the attention of a layer's
// semantic retrieval heads only, and divides the cache among layers by
// how much attention output each layer loses when compressed. Lin et al.,
// "CompressKV: Semantic Retrieval Heads Know What Tokens are Not Important
// Before Generation" (arXiv:2508.02401).
//
// Score is SnapKV's over the query heads of the layer's semantic
// retrieval heads (SRHs) only: the attention of the last Window queries
// (post-RoPE, causal, softmax) summed over the window, smoothed by average
// pooling of width Kernel and averaged over those query heads; every KV
// head of the layer keeps the same tokens, and the window itself is
// always kept. Window 8 and kernel 5 are the reference code's defaults.
//
// Choices: SRHs are found per KV head, whole GQA groups at a time: the
// ⌈Share·KVHeads⌉ KV heads (at least one) with the highest head score,
// where the score comes from a head file ('kvserve profile-heads': the
// share of a question's attention that lands on a needle, the paper's
// kind of retrieval score; NewCompressKV) or, for the registered
// "compresskv", on the fly from the window's attention mass outside the
// sinks and the window (DuoAttention.NonLocalMass). The reference code
// uses the 4 best of Llama-3.1-8B's 32 query heads, as many as one of its
// 8 groups, hence Share 1/8. Without recorded queries the most recent
// tokens are kept; when the KV heads of a layer hold different tokens each
// is scored by SnapKV over its own group.
type CompressKV struct {
	Window, Kernel int
	// Share is the fraction of a layer's KV heads whose query heads are
	// the SRHs.
	Share float64
	// Sink is the number of initial tokens NonLocalMass leaves out.
	Sink int
	// HeadScores[layer][kvHead] ranks the heads (from a head file); nil
	// ranks them on the fly.
	HeadScores [][]float64
}

// CompressKVLayers is CompressKV's layer-adaptive budget. Measure
// estimates each layer's eviction error from the observation window: for
// every query head and window query, the relative error of the attention
// output when the head keeps only the window and its best-scored tokens,
// ‖o_kept − o_full‖ / ‖o_full‖ over all of the layer's heads and queries
// together (a Frobenius ratio, as the reference code takes it after the
// output projection; here per head, before it), averaged over keeping
// the Probes fractions of the tokens outside the window. The layers then
// share L·⌊n·(1 − ratio)⌋ tokens per head: MinTokens each, the rest in
// proportion to their error, no layer above MaxFactor times the uniform
// count or the tokens it holds (layerShares, as in CAKE), as the
// reference code's error-aware allocation does (32 tokens at least, three
// times the budget at most).
//
// Choices: the reference code measures the error offline, on LongBench
// samples, during decoding, at one budget; kvserve measures it at
// compression time on the prompt's own last queries, and since Measure
// does not know the ratio, at a few fractions (1/8, 1/4, 1/2 by default)
// rather than at the ratio itself. Used through the plain Select (no
// planner pass) it is a uniform budget.
type CompressKVLayers struct {
	Window, MinTokens int
	MaxFactor         float64
	Probes            []float64
}

func init() {
	register("compresskv", func() (Scorer, Budget) {
		return CompressKV{Window: 8, Kernel: 5, Share: 1.0 / 8, Sink: DuoSink},
			CompressKVLayers{Window: 8, MinTokens: 32, MaxFactor: 3, Probes: []float64{0.125, 0.25, 0.5}}
	})
}

// NewCompressKV returns CompressKV at a ratio with the semantic retrieval
// heads ranked by a head file's scores (its retrieval marks where it has
// no scores).
func NewCompressKV(path string, ratio float64) (*Press, error) {
	h, err := ReadHeadFile(path)
	if err != nil {
		return nil, err
	}
	scores := h.Scores
	if scores == nil {
		scores = make([][]float64, h.Layers)
		for l, row := range h.Retrieval {
			scores[l] = make([]float64, len(row))
			for g, r := range row {
				if r {
					scores[l][g] = 1
				}
			}
		}
	}
	p, err := New("compresskv", ratio)
	if err != nil {
		return nil, err
	}
	c := p.Scorer.(CompressKV)
	c.HeadScores = scores
	p.Scorer = c
	return p, nil
}

// Needs implements Scorer: the window's queries.
func (c CompressKV) Needs() Needs { return Needs{Window: c.Window} }

// Score implements Scorer.
func (c CompressKV) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	switch {
	case !observed(s):
		for g := range out {
			out[g] = make([]float32, s.Tokens(g))
			for j, pos := range s.Positions[g] {
				out[g][j] = float32(pos)
			}
		}
		return out
	case !samePositions(s):
		return SnapKV{Window: c.Window, Kernel: c.Kernel}.Score(s)
	}
	n := s.Tokens(0)
	win := min(c.Window, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
	sc := make([]float32, n)
	if n > win {
		group := s.Heads / s.KVHeads
		var heads []int
		for _, g := range c.SemanticHeads(s) {
			heads = append(heads, indexRange(g*group, (g+1)*group)...)
		}
		acc := make([]float32, n-win)
		for _, hh := range heads {
			head := make([]float32, n-win)
			for _, row := range windowAttention(s, hh, win) {
				for j := range head {
					head[j] += row[j]
				}
			}
			for j, v := range avgPool(head, c.Kernel) {
				acc[j] += v / float32(len(heads))
			}
		}
		copy(sc, acc)
		padMax(sc, n-win)
	}
	for g := range out {
		out[g] = slices.Clone(sc)
	}
	return padLayer(out)
}

// SemanticHeads returns the KV heads of the state's layer whose query
// heads are the semantic retrieval heads, best first.
func (c CompressKV) SemanticHeads(s *State) []int {
	var w []float64
	if c.HeadScores != nil {
		w = make([]float64, s.KVHeads)
		if s.Layer < len(c.HeadScores) {
			copy(w, c.HeadScores[s.Layer])
		}
	} else {
		w = DuoAttention{Sink: c.Sink, Window: c.Window}.NonLocalMass(s)
	}
	order := indexRange(0, s.KVHeads)
	sort.SliceStable(order, func(x, y int) bool { return w[order[x]] > w[order[y]] })
	return order[:min(s.KVHeads, max(1, int(math.Ceil(c.Share*float64(s.KVHeads)-1e-9))))]
}

// Select implements Budget: without every layer's error, Uniform.
func (CompressKVLayers) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return Uniform{}.Select(scores, layer, layers, ratio)
}

// Measure implements LayerPlanner: the layer's eviction error.
func (b CompressKVLayers) Measure(s *State, scores [][]float32) float64 {
	if !observed(s) || len(b.Probes) == 0 {
		return 0
	}
	win := min(b.Window, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
	diff := make([]float64, len(b.Probes))
	norm := 0.0
	group := s.Heads / s.KVHeads
	for hh := range s.Heads {
		g := hh / group
		n := s.Tokens(g)
		if n <= win {
			continue
		}
		order := indexRange(0, n-win)
		sort.SliceStable(order, func(x, y int) bool { return scores[g][order[x]] > scores[g][order[y]] })
		for _, row := range windowAttention(s, hh, win) {
			d, o := b.rowError(s, g, row, order, n-win)
			for i := range diff {
				diff[i] += d[i]
			}
			norm += o
		}
	}
	if norm == 0 {
		return 0
	}
	e := 0.0
	for _, d := range diff {
		e += math.Sqrt(d / norm)
	}
	return e / float64(len(diff))
}

// rowError returns, for one query's attention row over head g's tokens,
// ‖o_kept − o_full‖² at each probe fraction (ascending: the window
// [pre, n) and the best tokens of order kept, the kept attention
// renormalised) and ‖o_full‖².
func (b CompressKVLayers) rowError(s *State, g int, row []float32, order []int, pre int) ([]float64, float64) {
	d := s.HeadDim
	full := make([]float64, d)
	for j, p := range row {
		for c, x := range s.Value(g, j) {
			full[c] += float64(p) * float64(x)
		}
	}
	kept := make([]float64, d)
	mass := 0.0
	add := func(j int) {
		p := float64(row[j])
		mass += p
		for c, x := range s.Value(g, j) {
			kept[c] += p * float64(x)
		}
	}
	for j := pre; j < len(row); j++ {
		add(j)
	}
	out := make([]float64, len(b.Probes))
	taken := 0
	for i, f := range b.Probes {
		for want := int(f * float64(pre)); taken < min(want, len(order)); taken++ {
			add(order[taken])
		}
		for c := range d {
			o := full[c]
			if mass > 0 {
				o -= kept[c] / mass
			}
			out[i] += o * o
		}
	}
	sq := 0.0
	for _, x := range full {
		sq += x * x
	}
	return out, sq
}

// SelectPlanned implements LayerPlanner.
func (b CompressKVLayers) SelectPlanned(all [][][]float32, layer int, measures []float64, ratio float64) [][]int {
	scores := all[layer]
	if len(scores) == 0 {
		return nil
	}
	// Prefill compression leaves every head of every layer the same
	// count; the budgets are computed on head 0's, as CAKE's are.
	n := len(scores[0])
	k := int(float64(n) * (1 - ratio))
	lo := min(b.MinTokens, k)
	hi := min(n, int(b.MaxFactor*float64(k)))
	if n == 0 || hi <= lo {
		return Uniform{}.Select(scores, layer, len(all), ratio)
	}
	keep := lo + layerShares(measures, len(measures)*(k-lo), hi-lo)[layer]
	// The ratio at which ⌊n·(1 − r)⌋ = keep.
	return Uniform{}.Select(scores, layer, len(all), 1-(float64(keep)+0.5)/float64(n))
}
