package press

import (
	"fmt"
	"sort"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// KIVI stores the cache in 2, 3, 4 or 8 bits instead of evicting: keys
// quantized per channel, values per token, asymmetric min/max codes with
// float16 scales and zeros, and the most recent Residual tokens in full
// precision. Liu et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization
// for KV Cache", ICML 2024 (arXiv:2402.02750).
//
// Choices: the token group is the pool's block (32 tokens, KIVI's G);
// value groups are kvcache.ValueGroup = 32 channels; the residual is whole
// blocks, so between Residual and Residual+31 of the latest tokens stay
// exact (see kvcache/quant.go). KIVI keeps every token: it is a Quantizer,
// not an eviction method, and its presses ignore the ratio (Parse reports
// it as 0). It lives in its own registry (QuantNames), not New's, so that
// callers that only know Apply cannot run it as a no-op eviction by
// mistake: build it with Parse and run it with Compress.
type KIVI struct {
	// Format is the codes' width: kvcache.Int2, Int3, Int4 or Int8.
	Format kvcache.Format
	// ValueFormat, if set, is the values' width instead (keys keep
	// Format): the kivi4v2 presses, ours, spend the bits on the keys,
	// which choose the tokens attention reads, and fewer on the values,
	// which it averages.
	ValueFormat kvcache.Format
	// Residual is how many of the latest tokens stay in full precision:
	// a multiple of the block size (KIVI's R = 128 by default).
	Residual int
}

// quantStage is a quantization press: a Quantizer with a Scorer that
// evicts nothing (under KeepAll).
type quantStage interface {
	Scorer
	Quantizer
}

// quantizers maps quantization press names to their stages.
var quantizers = map[string]quantStage{}

// ShortResidual is the full-precision window of the kivi…r32 presses:
// one block instead of KIVI's four, for tighter byte budgets.
const ShortResidual = 32

func init() {
	for _, f := range []kvcache.Format{kvcache.Int2, kvcache.Int3, kvcache.Int4, kvcache.Int8} {
		for _, r := range []int{kvcache.DefaultResidual, ShortResidual} {
			q := KIVI{Format: f, Residual: r}
			quantizers[q.Name()] = q
		}
	}
	for _, kv := range [][2]kvcache.Format{{kvcache.Int4, kvcache.Int2}, {kvcache.Int3, kvcache.Int2}, {kvcache.Int8, kvcache.Int4}} {
		for _, r := range []int{kvcache.DefaultResidual, ShortResidual} {
			q := KIVI{Format: kv[0], ValueFormat: kv[1], Residual: r}
			quantizers[q.Name()] = q
		}
	}
}

// QuantNames lists the quantization presses Parse knows (kivi2, kivi3,
// kivi4, kivi8: KIVI, arXiv:2402.02750, and the same with a 32-token
// window, kivi2r32 …; and the other storage stages), alone or after "+".
func QuantNames() []string {
	var out []string
	for n := range quantizers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Name returns the press name: kivi2, kivi3, kivi4 or kivi8 with the
// default window, and kivi4r32 and the like with another.
func (q KIVI) Name() string {
	name := fmt.Sprintf("kivi%d", q.Format.Bits())
	if q.ValueFormat != 0 && q.ValueFormat != q.Format {
		name += fmt.Sprintf("v%d", q.ValueFormat.Bits())
	}
	if q.Residual != kvcache.DefaultResidual {
		name += fmt.Sprintf("r%d", q.Residual)
	}
	return name
}

// Quantize implements Quantizer: it seals every block older than the
// residual window into q.Format (kvcache.Seq.Quantize, KIVI's layout).
func (q KIVI) Quantize(seq *kvcache.Seq) error {
	fv := q.ValueFormat
	if fv == 0 {
		fv = q.Format
	}
	if err := seq.QuantizeKV(q.Format, fv, q.Residual); err != nil {
		return fmt.Errorf("press %s: %w", q.Name(), err)
	}
	return nil
}

// StageLayer implements LayerStage: Quantize for layer l alone.
func (q KIVI) StageLayer(_ *model.Model, seq *kvcache.Seq, _ *model.Observer, _ float64, l int) error {
	fv := q.ValueFormat
	if fv == 0 {
		fv = q.Format
	}
	if err := seq.QuantizeLayerKV(l, q.Format, fv, q.Residual); err != nil {
		return fmt.Errorf("press %s: %w", q.Name(), err)
	}
	return nil
}

// Needs implements Scorer: nothing.
func (KIVI) Needs() Needs { return Needs{} }

// Score implements Scorer: every token alike (KIVI evicts nothing; its
// budget, KeepAll, keeps them all).
func (KIVI) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = make([]float32, s.Tokens(g))
	}
	return out
}

// KeepAll is the budget of a press that evicts nothing, whatever the
// ratio: quantization-only presses such as KIVI (arXiv:2402.02750).
type KeepAll struct{}

// Select implements Budget: every token of every head.
func (KeepAll) Select(scores [][]float32, _, _ int, _ float64) [][]int {
	out := make([][]int, len(scores))
	for g, s := range scores {
		out[g] = make([]int, len(s))
		for j := range s {
			out[g][j] = j
		}
	}
	return out
}
