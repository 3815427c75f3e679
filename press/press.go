// Package press compresses a sequence's KV cache: it scores every cached
// token of every (layer, KV head) with a method, chooses how many tokens
// each head keeps with a budget, and evicts the rest for real — the blocks
// go back to the pool.
//
// A method is usually only a Scorer, in the spirit of NVIDIA kvpress: one
// small file with one Score function. Budgets (uniform, per layer, per
// head) are separate, so any scorer composes with any budget.
package press

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// State is what a method sees of one layer once the tokens to compress are
// in the cache: keys, values and positions per KV head, and what the
// forward pass observed.
type State struct {
	Layer, Layers int
	Heads         int // query heads
	KVHeads       int
	HeadDim       int
	// Keys[g] and Values[g] hold head g's tokens, token-major (n·HeadDim),
	// widened to float32; keys are post-RoPE, as cached.
	Keys, Values [][]float32
	// Positions[g][j] is the original position of head g's token j.
	Positions [][]int
	// Obs is what the forward pass recorded (see Needs).
	Obs *model.Observer
	// InvFreq is the layer's RoPE inverse frequencies.
	InvFreq []float32
	// AttnScale is the attention's q·k scale.
	AttnScale float32
}

// Tokens returns how many tokens head g holds.
func (s *State) Tokens(g int) int { return len(s.Positions[g]) }

// Key returns token j's key in head g.
func (s *State) Key(g, j int) []float32 { return s.Keys[g][j*s.HeadDim : (j+1)*s.HeadDim] }

// Value returns token j's value in head g.
func (s *State) Value(g, j int) []float32 { return s.Values[g][j*s.HeadDim : (j+1)*s.HeadDim] }

// Needs says what a method needs the forward pass to record.
type Needs struct {
	// Window is how many of the last prompt tokens' queries to keep
	// (post-RoPE; and pre-RoPE with PreRope). −1 means all of them.
	Window    int
	PreRope   bool
	Hidden    bool
	Attention bool
	// QueryStats asks for the mean and covariance of the pre-RoPE queries
	// from the prompt's StatsFrom-th token on (model.Observer.QueryStats),
	// kept as sums instead of every query.
	QueryStats bool
	StatsFrom  int
}

// Scorer scores the tokens of one layer: scores[g][j] for KV head g and
// token j; higher means more worth keeping.
type Scorer interface {
	Score(s *State) [][]float32
	Needs() Needs
}

// Budget decides how many tokens each head of each layer keeps and which,
// given every layer's scores and the fraction to remove.
type Budget interface {
	// Select returns, for one layer, the ascending indices each head keeps.
	Select(scores [][]float32, layer, layers int, ratio float64) [][]int
}

// Press is a method under a budget at a compression ratio.
type Press struct {
	Name   string
	Scorer Scorer
	Budget Budget
	// Ratio is the fraction of cached tokens removed (0 ≤ Ratio < 1).
	Ratio float64
}

// Observer returns an Observer that records, over a forward pass of the
// positions [from, from+n), what all the given presses need (nil presses
// are skipped), or nil when none needs anything.
func Observer(presses []*Press, from, n int) *model.Observer {
	var o *model.Observer
	window := 0
	for _, p := range presses {
		if p == nil {
			continue
		}
		need := p.Scorer.Needs()
		if need.Window == 0 && !need.PreRope && !need.Hidden && !need.Attention && !need.QueryStats {
			continue
		}
		if o == nil {
			o = &model.Observer{From: from + n, StatsFrom: from + n}
		}
		if need.QueryStats {
			o.StatsFrom = min(o.StatsFrom, from+need.StatsFrom)
			o.QueryStats = true
		}
		o.PreRope = o.PreRope || need.PreRope
		o.Hidden = o.Hidden || need.Hidden
		o.Attention = o.Attention || need.Attention
		if need.Window < 0 {
			window = n
		} else {
			window = max(window, need.Window)
		}
	}
	if o != nil {
		o.From = from + max(0, n-window)
	}
	return o
}

// Apply compresses every layer of seq: score, select, evict. obs is what
// the forward pass recorded (may be nil when the scorer needs nothing).
func (p *Press) Apply(m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	if p.Ratio < 0 || p.Ratio >= 1 {
		return fmt.Errorf("press %s: ratio %v outside [0, 1)", p.Name, p.Ratio)
	}
	if p.Ratio == 0 {
		return nil
	}
	if a, ok := p.Budget.(Applier); ok { // chelsea, ems, minicache (kvmerge.go)
		return a.ApplyPress(p, m, seq, obs)
	}
	if pl, ok := p.Budget.(LayerPlanner); ok {
		return p.applyPlanned(m, seq, obs, pl)
	}
	for l := range m.Config.Layers {
		if err := p.applyLayer(m, seq, obs, l); err != nil {
			return err
		}
	}
	return nil
}

// Layerwise reports whether the press compresses each layer on its own, so
// that ApplyLayer may run on layer l as soon as the prompt has passed it
// (model.ForwardLayered) and the cache never holds more than the
// compressed layers and one full one. Budgets planned over all layers
// (CAKE, CompressKV's, WindowKV's: see Planned) and merges across layers
// (MiniCache) are not.
func (p *Press) Layerwise() bool {
	if p.Ratio == 0 {
		return true
	}
	switch b := p.Budget.(type) {
	case LayerApplier:
		return b.PerLayer()
	case Applier, LayerPlanner:
		return false
	}
	return true
}

// ApplyLayer compresses layer l of seq alone, for a Layerwise press; obs
// must hold layer l's observations. Apply is ApplyLayer over every layer.
func (p *Press) ApplyLayer(m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	if p.Ratio < 0 || p.Ratio >= 1 {
		return fmt.Errorf("press %s: ratio %v outside [0, 1)", p.Name, p.Ratio)
	}
	if p.Ratio == 0 {
		return nil
	}
	if !p.Layerwise() {
		return fmt.Errorf("press %s compresses all layers together: use Apply once every layer is computed", p.Name)
	}
	if a, ok := p.Budget.(LayerApplier); ok {
		return a.ApplyLayer(p, m, seq, obs, l)
	}
	return p.applyLayer(m, seq, obs, l)
}

// applyLayer scores, selects and evicts (or merges) layer l.
func (p *Press) applyLayer(m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	c := m.Config
	st := newState(m, seq, l, obs)
	scores := p.Scorer.Score(st)
	keep := p.Budget.Select(scores, l, c.Layers, p.Ratio)
	mg, merging := p.Budget.(Merger)
	for g, idx := range keep {
		if len(idx) == st.Tokens(g) {
			continue
		}
		var err error
		if merging {
			err = seq.KeepMerged(l, g, idx, mg.Merge(st, g, idx))
		} else {
			err = seq.Keep(l, g, idx)
		}
		if err != nil {
			return fmt.Errorf("press %s: layer %d head %d: %w", p.Name, l, g, err)
		}
	}
	return nil
}

func newState(m *model.Model, seq *kvcache.Seq, l int, obs *model.Observer) *State {
	c := m.Config
	st := &State{Layer: l, Layers: c.Layers, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		Keys: make([][]float32, c.KVHeads), Values: make([][]float32, c.KVHeads), Positions: make([][]int, c.KVHeads),
		Obs: obs, InvFreq: m.RopeInvFreq(l), AttnScale: c.AttnScale}
	d := c.HeadDim
	for g := range c.KVHeads {
		v := seq.View(l, g)
		n := v.Len()
		st.Keys[g], st.Values[g], st.Positions[g] = make([]float32, n*d), make([]float32, n*d), make([]int, n)
		for j := range n {
			v.Key(j, st.Keys[g][j*d:(j+1)*d])
			v.Value(j, st.Values[g][j*d:(j+1)*d])
			st.Positions[g][j] = v.Pos(j)
		}
	}
	return st
}

// topK returns the ascending indices of the k largest scores (the earlier
// token first among equals).
func topK(scores []float32, k int) []int {
	k = max(0, min(k, len(scores)))
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	idx = idx[:k]
	sort.Ints(idx)
	return idx
}

// Uniform keeps the same number of tokens in every head:
// ⌊n·(1 − ratio)⌋ of the n it holds, as kvpress does.
type Uniform struct{}

// Select implements Budget.
func (Uniform) Select(scores [][]float32, _, _ int, ratio float64) [][]int {
	out := make([][]int, len(scores))
	for g, s := range scores {
		out[g] = topK(s, int(float64(len(s))*(1-ratio)))
	}
	return out
}

// registry maps press names (kvpress's snake_case where it has the
// method) to constructors.
var registry = map[string]func() (Scorer, Budget){}

func register(name string, f func() (Scorer, Budget)) { registry[name] = f }

// Names lists the registered methods.
func Names() []string {
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New returns the named press at a ratio.
func New(name string, ratio float64) (*Press, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown press %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	s, b := f()
	return &Press{Name: name, Scorer: s, Budget: b, Ratio: ratio}, nil
}
