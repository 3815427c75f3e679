package press

import (
	"fmt"
	"sort"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// ThinK prunes key channels instead of tokens: in every (layer, KV head)
// it keeps the ⌈(1 − λ)·HeadDim⌉ channels of the keys that matter most to
// the last Window queries of the prompt and stores only those, with their
// index list; q·k is then computed over the kept channels. Xu et al.,
// "ThinK: Thinner Key Cache by Query-Driven Pruning", ICLR 2025
// (arXiv:2407.21018); kvpress's ThinKPress.
//
// The importance of channel c is ‖Q[:, c]·K[:, c]ᵀ‖_F = ‖Q[:, c]‖·‖K[:, c]‖
// (the paper's criterion), with Q the window's queries and K every cached
// key of the head; the ⌊λ·HeadDim⌋ least important channels go, as in
// kvpress (int(head_dim · key_channel_compression_ratio)).
//
// Choices:
//   - λ is the press's ratio ("think" alone: the fraction of key channels
//     removed; Parse keeps it). In a composition "A+think" one ratio
//     serves both stages: A evicts that fraction of the tokens, then ThinK
//     removes that fraction of the survivors' key channels.
//   - GQA: the query norms of the group's query heads are summed, so a
//     channel's score is Σ_h ‖Q_h[:, c]‖²·‖K[:, c]‖² (ordering as
//     ‖Q[:, c]‖·‖K[:, c]‖ with the group's queries stacked); kvpress
//     averages the squared norms, which orders the channels the same way.
//   - Keys are cached after RoPE, and the channels are pruned after RoPE,
//     as kvpress does and as ThinK's own code does: a RoPE pair (c, c +
//     HeadDim/2) may lose one of its two channels. Queries are post-RoPE
//     too, so the score measures the channels attention actually reads.
//   - The newest Recent tokens keep every channel (ThinK's recent_size,
//     32), in whole blocks: every block that lies wholly before the last
//     Recent tokens is pruned, so between Recent and Recent + 31 of the
//     latest tokens stay whole; tokens decoded later are stored whole.
//   - Values are untouched (the paper's value pruning is an extension not
//     modelled here).
//
// Memory is freed for real (kvcache.Seq.PruneKeyChannels): a pruned
// block's keys hold only the kept channels plus a uint16 index each.
type ThinK struct {
	// Window is how many of the last prompt queries score the channels.
	Window int
	// Recent is how many of the newest tokens keep every channel: a
	// multiple of the block size rounds nothing.
	Recent int
}

func init() {
	quantizers["think"] = ThinK{Window: 32, Recent: 32}
}

// Needs implements Scorer: the window's queries.
func (t ThinK) Needs() Needs { return Needs{Window: t.Window} }

// Score implements Scorer: every token alike (ThinK evicts nothing).
func (ThinK) Score(s *State) [][]float32 { return flatScores(s) }

// Quantize implements Quantizer. ThinK needs the window's queries, which
// only Press.Compress hands over (CompressStorage); called alone it
// reports that.
func (ThinK) Quantize(*kvcache.Seq) error {
	return fmt.Errorf("press think: needs the model and the window's queries: run it through Press.Compress")
}

// CompressStorage implements StorageStage: it scores and prunes the key
// channels of every (layer, KV head) at the press's ratio.
func (t ThinK) CompressStorage(m *model.Model, seq *kvcache.Seq, obs *model.Observer, ratio float64) error {
	for l := range m.Config.Layers {
		if err := t.StageLayer(m, seq, obs, ratio, l); err != nil {
			return err
		}
	}
	return nil
}

// StageLayer implements LayerStage: CompressStorage for layer l alone,
// with that layer's window queries.
func (t ThinK) StageLayer(m *model.Model, seq *kvcache.Seq, obs *model.Observer, ratio float64, l int) error {
	if ratio < 0 || ratio >= 1 {
		return fmt.Errorf("press think: ratio %v outside [0, 1)", ratio)
	}
	c := m.Config
	drop := int(float64(c.HeadDim) * ratio)
	if drop == 0 {
		return nil
	}
	if obs == nil || len(obs.Queries) < c.Layers {
		return fmt.Errorf("press think: no queries observed: prefill with press.Observer")
	}
	q := obs.Queries[l]
	win := min(t.Window, len(q)/(c.Heads*c.HeadDim))
	if win == 0 {
		return fmt.Errorf("press think: layer %d: no queries observed", l)
	}
	q = q[len(q)-win*c.Heads*c.HeadDim:]
	for g := range c.KVHeads {
		score := channelScores(q, c.Heads, c.KVHeads, c.HeadDim, g, seq.View(l, g))
		if err := seq.PruneKeyChannels(l, g, keepChannels(score, drop), t.Recent); err != nil {
			return fmt.Errorf("press think: %w", err)
		}
	}
	return nil
}

// channelScores returns ‖Q[:, c]‖²·‖K[:, c]‖² for each of the d channels
// of KV head g: Q the given queries (token-major, heads query heads of d
// each) of the group's query heads, K every key the view holds.
func channelScores(q []float32, heads, kvHeads, d, g int, v kvcache.View) []float64 {
	group := heads / kvHeads
	qn := make([]float64, d)
	for w := range len(q) / (heads * d) {
		for hh := g * group; hh < (g+1)*group; hh++ {
			for ch, x := range q[(w*heads+hh)*d : (w*heads+hh+1)*d] {
				qn[ch] += float64(x) * float64(x)
			}
		}
	}
	kn := make([]float64, d)
	key := make([]float32, d)
	for j := range v.Len() {
		v.Key(j, key)
		for ch, x := range key {
			kn[ch] += float64(x) * float64(x)
		}
	}
	for ch := range qn {
		qn[ch] *= kn[ch]
	}
	return qn
}

// keepChannels returns, ascending, the channels left once the drop with
// the lowest scores are removed (the later channel goes first among
// equals).
func keepChannels(score []float64, drop int) []int {
	idx := make([]int, len(score))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] > score[idx[b]] })
	keep := idx[:len(score)-drop]
	sort.Ints(keep)
	return keep
}

// flatScores scores every token of every head alike, for stages that keep
// every token (under KeepAll).
func flatScores(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = make([]float32, s.Tokens(g))
	}
	return out
}
