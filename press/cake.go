package press

import (
	"fmt"
	"math"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// LayerPlanner is a Budget that must see every layer before it selects in
// any: layer-adaptive budgets (CAKE; also SimLayerKV, CompressKV) divide
// one total among layers by a statistic of each layer. Apply scores every
// layer first, asking Measure for each layer's statistic while that
// layer's State is at hand, then selects every layer with all statistics
// known. Until Apply knows this interface (see applyPlanned), a planner is
// used through its plain Select.
type LayerPlanner interface {
	Budget
	// Measure returns what the planner needs from one layer; it is
	// called once per layer, in order, before any SelectPlanned.
	Measure(s *State, scores [][]float32) float64
	// SelectPlanned is Select for one layer knowing every layer's scores
	// (all[layer][head][token]) and measure.
	SelectPlanned(all [][][]float32, layer int, measures []float64, ratio float64) [][]int
}

// applyPlanned is Apply for a LayerPlanner budget: a scoring pass over all
// layers (keeping only the scores and one number per layer, never every
// layer's State at once), then a selecting pass.
func (p *Press) applyPlanned(m *model.Model, seq *kvcache.Seq, obs *model.Observer, pl LayerPlanner) error {
	plan := p.NewPlan(m)
	for l := range m.Config.Layers {
		p.PlanLayer(m, seq, obs, l, plan)
	}
	for l := range m.Config.Layers {
		if err := p.ApplyPlanned(seq, l, plan); err != nil {
			return err
		}
	}
	return nil
}

// Plan is what a LayerPlanner press keeps of every layer between its
// scoring pass and its selecting pass: the scores and one measure per
// layer — a float per token and head, not the keys and values.
type Plan struct {
	scores   [][][]float32
	measures []float64
}

// Planned reports whether the press's budget is a LayerPlanner: it must
// score every layer (PlanLayer) before it selects in any (ApplyPlanned).
// A prefill can then run twice layer by layer — scoring on the first pass,
// selecting each layer as the second computes it — and hold only one
// full layer at a time, at the price of computing the prompt twice.
func (p *Press) Planned() bool {
	_, ok := p.Budget.(LayerPlanner)
	return ok && p.Ratio > 0
}

// NewPlan returns an empty plan for the model's layers.
func (p *Press) NewPlan(m *model.Model) *Plan {
	return &Plan{scores: make([][][]float32, m.Config.Layers), measures: make([]float64, m.Config.Layers)}
}

// PlanLayer scores layer l of seq (whole, as computed) into plan.
func (p *Press) PlanLayer(m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int, plan *Plan) {
	st := newState(m, seq, l, obs)
	plan.scores[l] = p.Scorer.Score(st)
	plan.measures[l] = p.Budget.(LayerPlanner).Measure(st, plan.scores[l])
}

// ApplyPlanned selects and evicts layer l of seq — the same tokens, as
// computed, that PlanLayer scored — once every layer is in plan.
func (p *Press) ApplyPlanned(seq *kvcache.Seq, l int, plan *Plan) error {
	pl, ok := p.Budget.(LayerPlanner)
	if !ok {
		return fmt.Errorf("press %s plans no layers", p.Name)
	}
	for g, idx := range pl.SelectPlanned(plan.scores, l, plan.measures, p.Ratio) {
		if len(idx) == seq.Len(l, g) {
			continue
		}
		if err := seq.Keep(l, g, idx); err != nil {
			return fmt.Errorf("press %s: layer %d head %d: %w", p.Name, l, g, err)
		}
	}
	return nil
}

// CAKE divides the cache among layers by their preference for it, measured
// on the attention of the last Window queries (post-RoPE) to the tokens
// before the window: spatial dispersion H, the entropy −Σ a·log a summed
// over query heads, window queries and tokens, and temporal shift V, the
// variance over the window queries of each token's attention (unbiased),
// summed over query heads and tokens. Layer l's preference is
// P_l = H_l^(1/Tau1) · V_l^(1/Tau2), and the layers share the tokens
// outside the window, L·(⌊n·(1 − ratio)⌋ − Window) per head, in proportion
// to P_l; every layer also keeps its window. Qin et al., "CAKE: Cascading
// and Adaptive KV Cache Eviction with Layer Preferences", ICLR 2025
// (arXiv:2503.12491); window 32 and τ1 = τ2 = 1 are the reference code's
// defaults (its τ are tuned per model; tinychat has none).
//
// Choices: a layer's share is capped at the tokens it holds and the excess
// goes to the other layers in proportion to their preferences (water
// filling); the window is the last Window tokens of each head. CAKE's
// cascading (budgets recomputed as layers are prefilled, to bound peak
// memory) gives the same end state as allocating after prefill, which is
// what this does; memory at prefill is the full cache either way here.
// Select alone (a caller without the two-pass Apply) falls back to Uniform
// (or to Heads).
//
// cake_adakv_keydiff_sinks is our composition for issue 4's small budgets:
// CAKE's layer budgets, AdaKV's cross-head top-k (α = 0.2) inside each
// layer, over KeyDiff scores with 4 sinks and a 64-token recent window
// protected (see Protect).
type CAKE struct {
	Window     int
	Tau1, Tau2 float64
	// Heads, if set, divides a layer's budget among its KV heads (AdaKV);
	// nil gives every head of the layer the same count.
	Heads Budget
}

// CAKEScore is CAKE's eviction indicator: the mean over the last Window
// queries of the attention each token gets plus Gamma times its variance
// (tokens whose importance shifts are kept too), smoothed by average
// pooling of width Kernel, averaged over the GQA group; the window itself
// is always kept. Gamma 200 and kernel 5 as in the reference code.
type CAKEScore struct {
	Window, Kernel int
	Gamma          float64
}

func init() {
	register("cake", func() (Scorer, Budget) {
		return CAKEScore{Window: 32, Kernel: 5, Gamma: 200}, CAKE{Window: 32, Tau1: 1, Tau2: 1}
	})
	register("cake_keydiff", func() (Scorer, Budget) {
		return WithNeeds{Scorer: KeyDiff{}, More: Needs{Window: 32}}, CAKE{Window: 32, Tau1: 1, Tau2: 1}
	})
	register("cake_adakv_keydiff_sinks", func() (Scorer, Budget) {
		return WithNeeds{Scorer: Protect{Scorer: KeyDiff{}, Sink: 4, Recent: 64}, More: Needs{Window: 32}},
			CAKE{Window: 32, Tau1: 1, Tau2: 1, Heads: AdaKV{Alpha: 0.2}}
	})
}

// WithNeeds is a scorer that asks the forward pass for more than it needs
// itself, for a budget that looks at the State (CAKE's dispersion).
type WithNeeds struct {
	Scorer
	More Needs
}

// Needs implements Scorer: the union of the inner scorer's needs and More.
func (w WithNeeds) Needs() Needs { return mergeNeeds(w.Scorer.Needs(), w.More) }

func mergeNeeds(a, b Needs) Needs {
	out := Needs{PreRope: a.PreRope || b.PreRope, Hidden: a.Hidden || b.Hidden, Attention: a.Attention || b.Attention}
	if a.Window < 0 || b.Window < 0 {
		out.Window = -1
	} else {
		out.Window = max(a.Window, b.Window)
	}
	return out
}

// Needs implements Scorer: the window's queries.
func (p CAKEScore) Needs() Needs { return Needs{Window: p.Window} }

// Score implements Scorer.
func (p CAKEScore) Score(s *State) [][]float32 {
	group := s.Heads / s.KVHeads
	out := make([][]float32, s.KVHeads)
	for g := range out {
		n := s.Tokens(g)
		win := min(p.Window, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
		if n <= win {
			out[g] = make([]float32, n)
			continue
		}
		acc := make([]float32, n-win)
		for hh := g * group; hh < (g+1)*group; hh++ {
			probs := windowAttention(s, hh, win)
			head := make([]float32, n-win)
			for j := range head {
				mean, vari := meanVar(probs, j)
				head[j] = float32(mean + p.Gamma*vari)
			}
			for j, v := range avgPool(head, p.Kernel) {
				acc[j] += v / float32(group)
			}
		}
		out[g] = append(acc, make([]float32, win)...)
		padMax(out[g], n-win)
	}
	return padLayer(out)
}

// meanVar returns the mean and the unbiased variance of column j of rows.
func meanVar(rows [][]float32, j int) (float64, float64) {
	var mean float64
	for _, r := range rows {
		mean += float64(r[j])
	}
	mean /= float64(len(rows))
	if len(rows) < 2 {
		return mean, 0
	}
	var ss float64
	for _, r := range rows {
		d := float64(r[j]) - mean
		ss += d * d
	}
	return mean, ss / float64(len(rows)-1)
}

// Select implements Budget: without every layer's preference, Uniform
// (or Heads).
func (c CAKE) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return c.heads().Select(scores, layer, layers, ratio)
}

func (c CAKE) heads() Budget {
	if c.Heads == nil {
		return Uniform{}
	}
	return c.Heads
}

// Measure implements LayerPlanner: the layer's preference P.
func (c CAKE) Measure(s *State, _ [][]float32) float64 {
	h, v := c.dispersion(s)
	return math.Pow(h, 1/c.Tau1) * math.Pow(v, 1/c.Tau2)
}

// dispersion returns the layer's spatial dispersion H and temporal shift V.
func (c CAKE) dispersion(s *State) (ent, vari float64) {
	if s.Obs == nil || s.Layer >= len(s.Obs.Queries) {
		return 0, 0 // nothing observed: the layers share equally
	}
	win := min(c.Window, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
	for hh := range s.Heads {
		g := hh / (s.Heads / s.KVHeads)
		pre := s.Tokens(g) - win
		if pre <= 0 {
			continue
		}
		probs := windowAttention(s, hh, win)
		for _, row := range probs {
			for _, a := range row[:pre] {
				if a > 0 {
					ent -= float64(a) * math.Log(float64(a))
				}
			}
		}
		for j := range pre {
			_, v := meanVar(probs, j)
			vari += v
		}
	}
	return ent, vari
}

// SelectPlanned implements LayerPlanner.
func (c CAKE) SelectPlanned(all [][][]float32, layer int, measures []float64, ratio float64) [][]int {
	scores := all[layer]
	if len(scores) == 0 {
		return nil
	}
	// Prefill compression leaves every head of every layer the same count;
	// the budgets are computed on head 0's.
	n := len(scores[0])
	win := min(c.Window, n)
	share := int(float64(n)*(1-ratio)) - win
	if share <= 0 || n == 0 {
		return c.heads().Select(scores, layer, len(all), ratio)
	}
	keep := win + layerShares(measures, share*len(measures), n-win)[layer]
	// The ratio at which ⌊n·(1 − r)⌋ = keep, for the per-head budget.
	return c.heads().Select(scores, layer, len(all), 1-(float64(keep)+0.5)/float64(n))
}

// layerShares divides total among layers in proportion to their weights,
// no layer above limit, the excess of capped layers going to the others in
// proportion; the rounding remainder goes to the heaviest uncapped layers.
// Weights that are all zero (or not finite) share equally.
func layerShares(weights []float64, total, limit int) []int {
	L := len(weights)
	w := make([]float64, L)
	sum := 0.0
	for i, v := range weights {
		if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			w[i] = v
			sum += v
		}
	}
	if sum == 0 {
		for i := range w {
			w[i] = 1
		}
	}
	total = min(total, limit*L)
	out := make([]int, L)
	capped := make([]bool, L)
	left := total
	for left > 0 {
		free := 0.0
		for i := range L {
			if !capped[i] {
				free += w[i]
			}
		}
		if free == 0 {
			break
		}
		progress := 0
		for i := range L {
			if capped[i] {
				continue
			}
			give := min(limit-out[i], int(math.Floor(float64(left)*w[i]/free)))
			out[i] += give
			progress += give
		}
		left -= progress
		for i := range L {
			capped[i] = out[i] >= limit
		}
		if progress == 0 {
			// Hand out the remainder one token at a time, heaviest first.
			for left > 0 {
				best := -1
				for i := range L {
					if !capped[i] && (best < 0 || w[i] > w[best]) {
						best = i
					}
				}
				if best < 0 {
					break
				}
				out[best]++
				left--
				capped[best] = out[best] >= limit
			}
		}
	}
	return out
}
