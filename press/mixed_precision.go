package press

import (
	"fmt"
	"math"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// MixedPrecision is the budget of a mixed-precision press — MiKV (Yang et
// al., arXiv:2402.18096) and ZipCache (He et al., arXiv:2405.14256): it
// evicts nothing, and at ratio r stores the ⌊n·r⌋ lowest-scored of each
// head's n tokens in Low and the others in High (kvcache.Seq.QuantizeMixed:
// each precision keeps KIVI's layout, keys per channel and values per
// token, and tokens keep their positions).
//
// Only full blocks before the last Residual tokens can be sealed
// (kvcache.Seq.Sealable); the tokens after them stay in the pool's format,
// so they count as high precision and the demoted tokens are chosen among
// the sealable ones: ⌊n·r⌋ of them exactly, unless fewer are sealable.
// Blocks already sealed are left as they are, so running the press again
// (during decoding, say) seals only the blocks filled since.
type MixedPrecision struct {
	// High is the important tokens' format: a quantized format, or any
	// other (the zero value, F32) to keep them in the pool's own format.
	High kvcache.Format
	// Low is the other tokens' format: kvcache.Int2, Int3, Int4 or Int8.
	Low kvcache.Format
	// Residual is how many of the latest tokens are never sealed: a
	// multiple of the block size.
	Residual int
}

// Select implements Budget: every token, as a caller that only selects
// would see it (ApplyPress does the demotion).
func (MixedPrecision) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return KeepAll{}.Select(scores, layer, layers, ratio)
}

// Plan returns one head's precision flags: high[j] for the tokens kept in
// High. Of the first sealable tokens, the ⌊n·ratio⌋ with the lowest
// scores (at most sealable; the later token first among equals) are low;
// every other token is high.
func (MixedPrecision) Plan(scores []float32, sealable int, ratio float64) []bool {
	n := len(scores)
	sealable = min(sealable, n)
	demote := min(int(float64(n)*ratio), sealable)
	high := make([]bool, n)
	for _, j := range topK(scores[:sealable], sealable-demote) {
		high[j] = true
	}
	for j := sealable; j < n; j++ {
		high[j] = true
	}
	return high
}

// ApplyPress implements Applier: score each layer, plan every head's
// precisions and seal its blocks in them.
func (b MixedPrecision) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	for l := range m.Config.Layers {
		if err := b.ApplyLayer(p, m, seq, obs, l); err != nil {
			return err
		}
	}
	return nil
}

// PerLayer implements LayerApplier: each layer is planned on its own.
func (MixedPrecision) PerLayer() bool { return true }

// ApplyLayer implements LayerApplier.
func (b MixedPrecision) ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	high := b.High
	if !high.Quantized() {
		high = seq.Pool().Config().Format
	}
	st := newState(m, seq, l, obs)
	scores := p.Scorer.Score(st)
	for g := range m.Config.KVHeads {
		flags := b.Plan(scores[g], seq.Sealable(l, g, b.Residual), p.Ratio)
		if err := seq.QuantizeMixed(l, g, flags, high, b.Low, b.Residual); err != nil {
			return fmt.Errorf("press %s: layer %d head %d: %w", p.Name, l, g, err)
		}
	}
	return nil
}

// normalizedAttention returns, per KV head, the attention each token
// received during the observed forward pass divided by the number of
// queries that could see it and by the query heads of the GQA group —
// ZipCache's normalized attention score (arXiv:2405.14256), the statistic
// ObservedAttention (H2O) also ranks by. Tokens the pass did not observe
// (appended since) score +Inf: they are the newest and stay high.
func normalizedAttention(s *State) [][]float32 {
	group := float32(s.Heads / s.KVHeads)
	out := make([][]float32, s.KVHeads)
	for g := range out {
		n := s.Tokens(g)
		var sum []float32
		if s.Obs != nil && s.Layer < len(s.Obs.AttnSum) {
			sum = s.Obs.AttnSum[s.Layer][g]
		}
		seen := min(n, len(sum)) // queries at or after token j saw it
		out[g] = make([]float32, n)
		for j := range n {
			if j < len(sum) {
				out[g][j] = sum[j] / group / float32(seen-j)
			} else {
				out[g][j] = float32(math.Inf(1))
			}
		}
	}
	return out
}
