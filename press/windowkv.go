package press

import (
	"math"
	"slices"
	"sort"
)

// WindowKV keeps whole windows of Size consecutive tokens chosen by the
// attention the last Obs queries (the observation window) pay them, and
// lets the layers of a group share one choice. Zuo et al., "WindowKV:
// Task-Adaptive Group-Wise KV Cache Window Selection for Efficient LLM
// Inference" (arXiv:2503.17922).
//
// A token's attention is the softmax attention of each observation query
// (post-RoPE, causal), summed over the queries, per query head. The tokens
// before the observation window are cut into windows of Size from the
// first token; a window's score, per query head, is the mean of its
// ⌊Size/2⌋ largest attentions (the paper's strategy for localisation
// tasks such as QA) or, with Average, the mean of all of them (its
// strategy for aggregation tasks such as summaries), and is averaged over
// the layer's query heads, so every KV head of a layer keeps the same
// windows. Score writes each token its window's score (and the
// observation window the largest), so that the mean over a window, what
// Chunks ranks, is the window's score. The defaults are the reference
// code's: windows of 8 tokens, an observation window of 32 queries for the
// localisation strategy and 16 for the aggregation one.
//
// Choices: the paper picks the strategy per request with a BERT task
// classifier; kvserve is query-agnostic, so the strategy is fixed per
// press: "windowkv" localises (the classifier's answer for QA) and
// "windowkv_average" aggregates. When the heads of a layer hold different
// tokens (after a head-wise budget) each KV head is scored from its own
// query heads instead.
type WindowKV struct {
	Obs, Size int
	Average   bool
}

// WindowGroups is WindowKV's budget: whole windows chosen with Chunks
// (best first while they fit), the observation window always kept, and
// the layers split into groups of consecutive layers that share the first
// layer's windows (the paper's intra-group index sharing; every layer is
// still scored here, so the saving in scoring is not taken). The reference
// code shares among Group = 8 layers of a 32-layer model, 4 groups; a
// shallower model gets groups of ⌊layers/4⌋ layers (at least one, at most
// Group), so that it too has about 4 groups.
//
// Budgets: a layer keeps ⌊n·(1 − ratio)⌋ tokens on average; outside the
// observation window that is cap = ⌊n·(1 − ratio)⌋ − Obs, and the groups
// get budgets falling linearly from 2·cap − last for the first group to
// last = ⌊cap·Group/Beta⌋ for the last (the reference code's arithmetic
// decay, Group 8 and β 14: the last group keeps 8/14 of the mean, however
// many layers the groups hold; flat with one group or Group ≥ β), rounded
// down, so the layers together keep at most the uniform total. A layer
// whose budget exceeds the tokens it holds keeps them all (the excess is
// not passed on, as in the reference code). Used through the plain Select
// (no planner pass), each layer chooses its own windows under its group's
// budget.
type WindowGroups struct {
	Obs, Size, Group int
	Beta             float64
}

func init() {
	register("windowkv", func() (Scorer, Budget) {
		return WindowKV{Obs: 32, Size: 8}, WindowGroups{Obs: 32, Size: 8, Group: 8, Beta: 14}
	})
	register("windowkv_average", func() (Scorer, Budget) {
		return WindowKV{Obs: 16, Size: 8, Average: true}, WindowGroups{Obs: 16, Size: 8, Group: 8, Beta: 14}
	})
}

// Needs implements Scorer: the observation window's queries.
func (p WindowKV) Needs() Needs { return Needs{Window: p.Obs} }

// Score implements Scorer.
func (p WindowKV) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	if samePositions(s) {
		sc := p.windowScores(s, 0, indexRange(0, s.Heads))
		for g := range out {
			out[g] = slices.Clone(sc)
		}
		return out
	}
	group := s.Heads / s.KVHeads
	for g := range out {
		out[g] = p.windowScores(s, g, indexRange(g*group, (g+1)*group))
	}
	return out
}

// windowScores scores head g's tokens from the given query heads (which
// read head g's tokens or, by samePositions, the same tokens).
func (p WindowKV) windowScores(s *State, g int, heads []int) []float32 {
	n := s.Tokens(g)
	out := make([]float32, n)
	if !observed(s) {
		for j, pos := range s.Positions[g] {
			out[j] = float32(pos) // nothing observed: the latest windows
		}
		return out
	}
	win := min(p.Obs, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim), n)
	review := n - win
	size := max(1, p.Size)
	top := max(1, size/2)
	sum := make([]float64, review)
	attn := make([]float64, review)
	for _, hh := range heads {
		clear(attn)
		for _, row := range windowAttention(s, hh, win) {
			for j := range attn {
				attn[j] += float64(row[j])
			}
		}
		for lo := 0; lo < review; lo += size {
			hi := min(review, lo+size)
			v := windowScore(attn[lo:hi], top, p.Average)
			for j := lo; j < hi; j++ {
				sum[j] += v / float64(len(heads))
			}
		}
	}
	for j, v := range sum {
		out[j] = float32(v)
	}
	padMax(out, review)
	return out
}

// windowScore is the mean of the top largest values of w, or of all of
// them with average.
func windowScore(w []float64, top int, average bool) float64 {
	if !average && top < len(w) {
		w = slices.Clone(w)
		sort.Sort(sort.Reverse(sort.Float64Slice(w)))
		w = w[:top]
	}
	s := 0.0
	for _, v := range w {
		s += v
	}
	return s / float64(len(w))
}

// observed reports whether the forward pass recorded queries of the
// state's layer.
func observed(s *State) bool {
	return s.Obs != nil && s.Layer < len(s.Obs.Queries) && len(s.Obs.Queries[s.Layer]) >= s.Heads*s.HeadDim
}

// samePositions reports whether every KV head of the state holds the same
// tokens (as after prefill), so that one choice serves them all.
func samePositions(s *State) bool {
	for g := 1; g < s.KVHeads; g++ {
		if !slices.Equal(s.Positions[g], s.Positions[0]) {
			return false
		}
	}
	return true
}

// Select implements Budget: the layer's own windows under its group's
// budget.
func (b WindowGroups) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return b.selectLayer(scores, layer, layers, ratio)
}

// Measure implements LayerPlanner: WindowKV's budgets need no statistic.
func (WindowGroups) Measure(*State, [][]float32) float64 { return 0 }

// SelectPlanned implements LayerPlanner: a layer chooses with the scores
// of its group's first layer when that layer's heads hold as many tokens
// as its own.
func (b WindowGroups) SelectPlanned(all [][][]float32, layer int, _ []float64, ratio float64) [][]int {
	src := all[layer]
	if lead := all[layer-layer%b.group(len(all))]; sameShape(lead, src) {
		src = lead
	}
	return b.selectLayer(src, layer, len(all), ratio)
}

func (b WindowGroups) selectLayer(scores [][]float32, layer, layers int, ratio float64) [][]int {
	out := make([][]int, len(scores))
	for g, s := range scores {
		n := len(s)
		k := int(float64(n) * (1 - ratio))
		obs := min(b.Obs, n)
		if k <= obs {
			out[g] = indexRange(n-k, n)
			continue
		}
		review := n - obs
		budget := b.GroupBudget(k-obs, layer, layers)
		if budget >= review {
			out[g] = indexRange(0, n)
			continue
		}
		// The ratio at which Chunks' ⌊review·(1 − r)⌋ is budget.
		idx := Chunks{Size: b.Size}.chunks(s[:review], 1-(float64(budget)+0.5)/float64(review))
		out[g] = append(idx, indexRange(review, n)...)
	}
	return out
}

// group returns the layers per group for a model of layers layers.
func (b WindowGroups) group(layers int) int { return max(1, min(b.Group, layers/4)) }

// GroupBudget returns the tokens outside the observation window that layer
// keeps when the layers keep cap on average: the arithmetic decay over
// groups described on WindowGroups, scaled so that the layers' mean is
// cap even when the last group is short, and rounded down.
func (b WindowGroups) GroupBudget(cap, layer, layers int) int {
	gs := b.group(layers)
	groups := (layers + gs - 1) / gs
	if groups <= 1 || b.Beta <= 0 || cap <= 0 {
		return cap
	}
	last := min(1, float64(b.Group)/b.Beta) // of the mean
	first := 2 - last
	share := func(l int) float64 { return first - float64(l/gs)*(first-last)/float64(groups-1) }
	mean := 0.0
	for l := range layers {
		mean += share(l) / float64(layers)
	}
	return int(math.Floor(float64(cap)*share(layer)/mean + 1e-9))
}

// sameShape reports whether two layers' heads hold as many tokens each.
func sameShape(a, b [][]float32) bool {
	if len(a) != len(b) {
		return false
	}
	for g := range a {
		if len(a[g]) != len(b[g]) {
			return false
		}
	}
	return true
}
