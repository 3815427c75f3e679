package press

import (
	"fmt"
	"math"
	"sort"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// DuoHeads is DuoAttention as the paper and kvpress define it: Xiao et
// al., "DuoAttention: Efficient Long-Context LLM Inference with Retrieval
// and Streaming Heads" (arXiv:2410.10819). The compression ratio is the
// share of KV heads, over all layers together, that become streaming
// heads: the ⌊L·H·ratio⌉ heads with the lowest head scores. A streaming
// head keeps its first Sink tokens and its last Recent tokens; a retrieval
// head keeps everything. The share of bytes removed is therefore
// ratio·(1 − (sink + recent)/n), as kvpress reports it.
//
// Head scores (higher: more of a retrieval head) come from a head file
// written by 'kvserve profile-heads' (the share of a passkey question's
// attention that lands on the needle) when one is given (NewDuo); the
// streaming heads are then the lowest over all layers, as in kvpress.
// Without a file they are measured on the prompt itself: a head's score is
// the share of the last Window queries' attention (averaged over its query
// group) that falls outside its sinks and recent window — what it would
// lose as a streaming head. The paper learns gates offline instead and
// kvpress loads them or estimates them on sample text; the on-the-fly score
// needs no files and adapts to the prompt. Each layer is then cut as soon
// as it is computed (bounded peak memory), so the streaming heads are
// spread evenly over the layers and ranked within each (see ApplyLayer).
//
// Window sizes: kvpress's defaults are 128 sinks + 256 recent, set for
// contexts of tens of thousands of tokens. For a context of n tokens
// shorter than ScaleAt = 8·(Sink + Recent) (3 072 by default) both shrink
// by n/ScaleAt, rounded, with at least DuoSink sinks and one recent token,
// so that a streaming head keeps at most an eighth of a short context
// (n = 1 000: 42 + 83) as it would of a long one.
type DuoHeads struct {
	// Scores[layer][kvHead] are the head scores; nil: measured on the fly.
	Scores [][]float64
	// Sink and Recent are a streaming head's windows at full scale.
	Sink, Recent int
	// Window is how many recorded queries score heads on the fly.
	Window int
}

// DuoHeadsSink and DuoHeadsRecent are kvpress's streaming windows.
const (
	DuoHeadsSink   = 128
	DuoHeadsRecent = 256
)

func init() {
	register("duo_attention", func() (Scorer, Budget) {
		return DuoAttention{Sink: DuoSink, Window: DuoWindow},
			DuoHeads{Sink: DuoHeadsSink, Recent: DuoHeadsRecent, Window: DuoWindow}
	})
}

// NewDuo returns duo_attention at a ratio (the share of streaming heads)
// with the head scores of a head file: nothing needs observing.
func NewDuo(path string, ratio float64) (*Press, error) {
	h, err := ReadHeadFile(path)
	if err != nil {
		return nil, err
	}
	scores := h.Scores
	if scores == nil { // an older file without scores: its split ranks
		scores = make([][]float64, len(h.Retrieval))
		for l, row := range h.Retrieval {
			scores[l] = make([]float64, len(row))
			for g, r := range row {
				if r {
					scores[l][g] = 1
				}
			}
		}
	}
	return &Press{Name: "duo_attention", Scorer: DuoAttention{Sink: DuoSink},
		Budget: DuoHeads{Scores: scores, Sink: DuoHeadsSink, Recent: DuoHeadsRecent}, Ratio: ratio}, nil
}

// Pattern returns the sinks and recent tokens a streaming head keeps out of
// n (see DuoHeads on the scaling).
func (b DuoHeads) Pattern(n int) (sink, recent int) {
	full := b.Sink + b.Recent
	scale := 1.0
	if at := 8 * full; n < at && at > 0 {
		scale = float64(n) / float64(at)
	}
	sink = max(min(DuoSink, b.Sink), int(math.Round(float64(b.Sink)*scale)))
	recent = max(min(1, b.Recent), int(math.Round(float64(b.Recent)*scale)))
	return sink, recent
}

// Streaming returns, for scores shaped layers × KV heads, which heads are
// streaming at a ratio: the ⌊count·ratio⌉ lowest, earlier layer and head
// first among equals.
func Streaming(scores [][]float64, ratio float64) [][]bool {
	type head struct {
		s    float64
		l, g int
	}
	var all []head
	out := make([][]bool, len(scores))
	for l, row := range scores {
		out[l] = make([]bool, len(row))
		for g, v := range row {
			all = append(all, head{v, l, g})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].s < all[j].s })
	for _, h := range all[:int(math.Round(float64(len(all))*ratio))] {
		out[h.l][h.g] = true
	}
	return out
}

// keepStreaming returns the indices a streaming head of n tokens keeps.
func (b DuoHeads) keepStreaming(n int) []int {
	sink, recent := b.Pattern(n)
	if sink+recent >= n {
		return nil // keeps all
	}
	idx := make([]int, 0, sink+recent)
	for j := range sink {
		idx = append(idx, j)
	}
	for j := n - recent; j < n; j++ {
		idx = append(idx, j)
	}
	return idx
}

// ApplyPress implements Applier: ApplyLayer on every layer.
func (b DuoHeads) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	for l := range m.Config.Layers {
		if err := b.ApplyLayer(p, m, seq, obs, l); err != nil {
			return err
		}
	}
	return nil
}

// cut cuts layer l's streaming heads to their sinks and recent windows.
func (b DuoHeads) cut(p *Press, seq *kvcache.Seq, l int, streaming []bool) error {
	for g, s := range streaming {
		if !s {
			continue
		}
		idx := b.keepStreaming(seq.Len(l, g))
		if idx == nil {
			continue
		}
		if err := seq.Keep(l, g, idx); err != nil {
			return fmt.Errorf("press %s: layer %d head %d: %w", p.Name, l, g, err)
		}
	}
	return nil
}

// PerLayer implements LayerApplier: each layer is cut as soon as it is
// computed.
func (DuoHeads) PerLayer() bool { return true }

// ApplyLayer implements LayerApplier. With head scores the streaming heads
// are the lowest-ranked over all layers. On the fly a layer is judged
// before later layers exist, so the ⌊L·H·ratio⌉ streaming heads are spread
// evenly over the layers — ⌊(l+1)·H·ratio⌉ − ⌊l·H·ratio⌉ in layer l — and
// each layer's lowest-scored heads take its quota.
func (b DuoHeads) ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	c := m.Config
	if b.Scores != nil {
		if len(b.Scores) != c.Layers || len(b.Scores[0]) != c.KVHeads {
			return fmt.Errorf("press %s: head scores are %d layers × %d heads, the model has %d × %d (profile the heads of this model)",
				p.Name, len(b.Scores), len(b.Scores[0]), c.Layers, c.KVHeads)
		}
		return b.cut(p, seq, l, Streaming(b.Scores, p.Ratio)[l])
	}
	st := newState(m, seq, l, obs)
	sink, recent := b.Pattern(st.Tokens(0))
	scores := outsideMass(st, sink, recent, b.Window)
	h := float64(c.KVHeads)
	quota := int(math.Round(float64(l+1)*h*p.Ratio)) - int(math.Round(float64(l)*h*p.Ratio))
	return b.cut(p, seq, l, Streaming([][]float64{scores}, float64(quota)/h)[0])
}

// Select implements Budget for callers without Apply, one layer at a time:
// the layer's ⌊KVHeads·ratio⌉ lowest-scored heads (by the file's scores,
// else the first ones) stream; the others keep everything.
func (b DuoHeads) Select(scores [][]float32, layer, _ int, ratio float64) [][]int {
	row := make([]float64, len(scores))
	if layer < len(b.Scores) && len(b.Scores[layer]) == len(scores) {
		copy(row, b.Scores[layer])
	}
	streaming := Streaming([][]float64{row}, ratio)[0]
	out := make([][]int, len(scores))
	for g, s := range scores {
		if streaming[g] {
			if idx := b.keepStreaming(len(s)); idx != nil {
				out[g] = idx
				continue
			}
		}
		out[g] = span0(len(s))
	}
	return out
}

func span0(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
