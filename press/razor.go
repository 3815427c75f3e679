package press

import (
	"fmt"
	"math"
	"sort"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Compensator is a Budget that summarises the tokens a head drops into one
// synthetic token it keeps instead (RazorAttention's compensation token).
// applyCompensated asks SelectCompensated for each layer, with the
// layer's State at hand, and stores each head with Seq.KeepWithExtra (or
// Seq.Keep where a head has no extra token); a Compensator reaches it by
// being an Applier whose ApplyPress calls it, as Razor does. Callers
// without Apply use the plain Select: eviction without compensation.
type Compensator interface {
	Budget
	// SelectCompensated returns, for one layer, what each head keeps.
	SelectCompensated(s *State, scores [][]float32, ratio float64) []Kept
}

// Kept is what one head keeps under a Compensator: the ascending indices
// of its real tokens and, when Count > 0, one synthetic token.
type Kept struct {
	Idx []int
	// Key and Value of the synthetic token (HeadDim each, post-RoPE keys
	// as cached) and the position that orders it among the kept tokens.
	Key, Value []float32
	Pos        int
	// Count is how many tokens the synthetic token stands for (0: there
	// is none); attention weighs it as that many (Seq.KeepWithExtra).
	Count int
}

// applyCompensated is Apply for a Compensator budget: per layer, score,
// select, then keep the chosen tokens plus any synthetic token.
func (p *Press) applyCompensated(m *model.Model, seq *kvcache.Seq, obs *model.Observer, cp Compensator) error {
	for l := range m.Config.Layers {
		if err := p.applyCompensatedLayer(m, seq, obs, cp, l); err != nil {
			return err
		}
	}
	return nil
}

// applyCompensatedLayer is applyCompensated for layer l alone.
func (p *Press) applyCompensatedLayer(m *model.Model, seq *kvcache.Seq, obs *model.Observer, cp Compensator, l int) error {
	st := newState(m, seq, l, obs)
	for g, k := range cp.SelectCompensated(st, p.Scorer.Score(st), p.Ratio) {
		var err error
		switch {
		case k.Count > 0:
			err = seq.KeepWithExtra(l, g, k.Idx, k.Key, k.Value, k.Pos, k.Count)
		case len(k.Idx) != st.Tokens(g):
			err = seq.Keep(l, g, k.Idx)
		}
		if err != nil {
			return fmt.Errorf("press %s: layer %d head %d: %w", p.Name, l, g, err)
		}
	}
	return nil
}

// RazorAttention keeps every token of a layer's retrieval heads and, in
// every other head, only Sink initial tokens and the most recent ones; the
// tokens such a head drops are summarised into one compensation token
// whose key and value are the means of their keys and values. Tang et al.,
// "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads"
// (arXiv:2407.15891).
//
// RazorAttention is the scorer (DuoAttention's streaming scores: sinks
// first, then by recency); the Razor budget decides the heads, the counts
// and the compensation token. Retrieval heads come from DuoAttention's
// machinery: a head file written by 'kvserve profile-heads' (NewRazor),
// or, for the registered "razor_attention", on the fly from the attention
// mass of the last Window queries outside the sinks and the last Window
// positions (DuoAttention.NonLocalMass).
type RazorAttention struct {
	// Sink is the number of initial tokens a non-retrieval head keeps.
	Sink int
	// Window is how many of the last queries classify heads on the fly;
	// 0 asks the forward pass for nothing (a head file decides).
	Window int
}

// Razor is RazorAttention's budget. Choices where the paper leaves room
// or where kvserve differs:
//
//   - Ratio. The layer keeps Σ_g ⌊n_g·(1 − ratio)⌋ entries, the
//     compensation token counting as one, so the ratio is the fraction of
//     cached entries removed, as for every press. Retrieval heads keep all
//     n_g; the non-retrieval heads share the rest evenly (Duo.Counts),
//     each keeping at least Sink + MinRecent real tokens plus its
//     compensation token. The paper instead fixes a buffer of
//     max(S₀, N/C) recent tokens per non-retrieval head.
//   - Which heads. The paper marks about 15 % of all heads (echo and
//     induction heads) model-wide; here each layer marks
//     ⌈Share·KVHeads⌉ KV heads (at least one), the most non-local first,
//     and fewer when the ratio could not be met otherwise: a retrieval
//     head is demoted (the least non-local first) while the layer's
//     budget cannot hold the retrieval heads in full and every other head
//     at its floor. With a head file its marked heads are the candidates,
//     in the order of the file's scores.
//   - The compensation token. Its key is the mean of the dropped keys as
//     cached (post-RoPE: each was rotated at its own position, and the
//     mean is not rotated again), its value the mean of the dropped
//     values, as in the paper's equation 4. It takes the position of the
//     first dropped token, which lies between the sinks and the recent
//     window, so positions stay ascending and Truncate/Fork below that
//     position forget it with the tokens it summarises.
//   - Attention. As in the paper (|D|·exp(q·k̂) in the softmax, its
//     equation 5), the token weighs as the |D| tokens it stands for: the
//     cache stores ln |D| as its score bias (Seq.KeepWithExtra), and
//     attention reads such a head through View.Scores, which adds it.
//   - A compensation token already in the cache (after decode-time
//     recompression) is an ordinary token the next time: if dropped, it
//     counts as one in the new summary.
type Razor struct {
	// Retrieval and Scores come from a head file (nil: classify on the
	// fly).
	Retrieval [][]bool
	Scores    [][]float64
	// Share is the fraction of each layer's KV heads that are retrieval
	// heads when classifying on the fly.
	Share float64
	// Sink and MinRecent are a non-retrieval head's least real tokens.
	Sink, MinRecent int
	// Window is the on-the-fly classification window.
	Window int
}

// RazorShare is the paper's share of retrieval heads (echo + induction).
const RazorShare = 0.15

func init() {
	register("razor_attention", func() (Scorer, Budget) {
		return RazorAttention{Sink: DuoSink, Window: DuoWindow},
			Razor{Share: RazorShare, Sink: DuoSink, MinRecent: DuoSink, Window: DuoWindow}
	})
}

// NewRazor returns RazorAttention at a ratio with the retrieval heads of a
// head file ('kvserve profile-heads'); nothing needs observing.
func NewRazor(path string, ratio float64) (*Press, error) {
	h, err := ReadHeadFile(path)
	if err != nil {
		return nil, err
	}
	b := Razor{Retrieval: h.Retrieval, Scores: h.Scores, Share: RazorShare, Sink: DuoSink, MinRecent: DuoSink}
	return &Press{Name: "razor_attention", Scorer: RazorAttention{Sink: DuoSink}, Budget: b, Ratio: ratio}, nil
}

// Needs implements Scorer: the window's queries when classifying on the fly.
func (p RazorAttention) Needs() Needs { return Needs{Window: p.Window} }

// Score implements Scorer: DuoAttention's streaming scores.
func (p RazorAttention) Score(s *State) [][]float32 {
	return DuoAttention{Sink: p.Sink}.Score(s)
}

// duo is the Duo budget Razor counts with: the floor of a non-retrieval
// head is one more than its real tokens, for the compensation token.
func (b Razor) duo() Duo { return Duo{Sink: b.Sink, MinRecent: b.MinRecent + 1} }

// Select implements Budget without compensation (callers without the
// Compensator hook): DuoAttention's budget with the file's heads, or no
// retrieval heads.
func (b Razor) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	d := b.duo()
	d.Retrieval = b.Retrieval
	return d.Select(scores, layer, layers, ratio)
}

// ApplyPress implements Applier: Press.Apply hands Razor presses here, to
// store the compensation tokens.
func (b Razor) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	return p.applyCompensated(m, seq, obs, b)
}

// PerLayer implements LayerApplier: a layer's retrieval heads and counts
// depend on that layer alone.
func (Razor) PerLayer() bool { return true }

// ApplyLayer implements LayerApplier.
func (b Razor) ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	return p.applyCompensatedLayer(m, seq, obs, b, l)
}

// SelectCompensated implements Compensator.
func (b Razor) SelectCompensated(s *State, scores [][]float32, ratio float64) []Kept {
	marked := make([][]float32, len(scores))
	copy(marked, scores)
	inf := float32(math.Inf(1))
	for _, g := range b.RetrievalHeads(s, ratio) {
		marked[g] = make([]float32, len(scores[g]))
		for j := range marked[g] {
			marked[g][j] = inf // Duo's mark of a retrieval head
		}
	}
	counts := b.duo().Counts(marked, s.Layer, ratio)
	out := make([]Kept, len(scores))
	for g, k := range counts {
		n := len(scores[g])
		if k >= n {
			out[g] = Kept{Idx: indexRange(0, n)}
			continue
		}
		out[g] = compensate(s, g, topK(scores[g], k-1))
	}
	return out
}

// compensate returns head g keeping idx plus one token summarising the
// others: the mean key and value at the first dropped token's position.
func compensate(s *State, g int, idx []int) Kept {
	d := s.HeadDim
	key, val := make([]float64, d), make([]float64, d)
	kept := make([]bool, s.Tokens(g))
	for _, j := range idx {
		kept[j] = true
	}
	first, dropped := -1, 0
	for j := range kept {
		if kept[j] {
			continue
		}
		if first < 0 {
			first = j
		}
		dropped++
		for c, x := range s.Key(g, j) {
			key[c] += float64(x)
		}
		for c, x := range s.Value(g, j) {
			val[c] += float64(x)
		}
	}
	k := Kept{Idx: idx, Key: make([]float32, d), Value: make([]float32, d), Pos: s.Positions[g][first], Count: dropped}
	for c := range d {
		k.Key[c] = float32(key[c] / float64(dropped))
		k.Value[c] = float32(val[c] / float64(dropped))
	}
	return k
}

// RetrievalHeads returns the KV heads of the state's layer that keep every
// token at the ratio: the candidates (the head file's marked heads by its
// scores, or the ⌈Share·KVHeads⌉ most non-local heads of the window), as
// many of them, best first, as the layer's budget holds with every other
// head at its floor.
func (b Razor) RetrievalHeads(s *State, ratio float64) []int {
	cand := b.candidates(s)
	budget := 0
	for g := range s.KVHeads {
		budget += int(float64(s.Tokens(g)) * (1 - ratio))
	}
	floor := b.Sink + b.MinRecent + 1
	for r := len(cand); r > 0; r-- {
		need := 0
		full := make([]bool, s.KVHeads)
		for _, g := range cand[:r] {
			full[g] = true
		}
		for g := range s.KVHeads {
			if full[g] {
				need += s.Tokens(g)
			} else {
				need += min(s.Tokens(g), floor)
			}
		}
		if need <= budget {
			return cand[:r]
		}
	}
	return nil
}

// candidates returns the layer's candidate retrieval heads, best first.
func (b Razor) candidates(s *State) []int {
	var order []int
	var weight []float64
	switch {
	case b.Retrieval != nil:
		if s.Layer >= len(b.Retrieval) {
			return nil
		}
		weight = make([]float64, s.KVHeads)
		for g, r := range b.Retrieval[s.Layer] {
			if g < s.KVHeads && r {
				order = append(order, g)
				if s.Layer < len(b.Scores) && g < len(b.Scores[s.Layer]) {
					weight[g] = b.Scores[s.Layer][g]
				}
			}
		}
	case b.Window > 0 && s.Obs != nil && s.Layer < len(s.Obs.Queries) && len(s.Obs.Queries[s.Layer]) > 0:
		weight = DuoAttention{Sink: b.Sink, Window: b.Window}.NonLocalMass(s)
		order = indexRange(0, s.KVHeads)
	default:
		return nil
	}
	sort.SliceStable(order, func(x, y int) bool { return weight[order[x]] > weight[order[y]] })
	if b.Retrieval == nil {
		order = order[:min(len(order), max(1, int(math.Ceil(b.Share*float64(s.KVHeads)-1e-9))))]
	}
	return order
}

// indexRange returns lo, lo+1, …, hi−1.
func indexRange(lo, hi int) []int {
	out := make([]int, 0, max(0, hi-lo))
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}
