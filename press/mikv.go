package press

import "github.com/kvserve/kvserve/kvcache"

// MiKV keeps every token: the ones an eviction method would keep stay in
// high precision, the ones it would evict are kept in low precision
// instead of dropped. Yang et al., "No Token Left Behind: Reliable KV
// Cache Compression via Importance-Aware Mixed Precision Quantization"
// (arXiv:2402.18096). Its press "mikv" runs at ratio r = the fraction of
// each head's tokens demoted to low precision (MixedPrecision).
//
// Choices where the paper leaves room or where this cache differs:
//   - importance comes from an eviction scorer, Importance; by default
//     H2O's heavy hitters as observed_attention scores them (the paper
//     pairs MiKV with H2O): the attention a token received over the
//     prompt, divided by the number of queries that could see it and
//     averaged over the GQA group. On the test fixture the raw
//     accumulated sum did worse (logits error 0.48 against 0.27 at ratio
//     0.5), since it demotes the recent tokens H2O keeps in a separate
//     window;
//   - important tokens stay in the pool's format (the paper's FP16), the
//     others go to int2; both parts of a block keep KIVI's layout — keys
//     per channel, values per token, float16 scales and zeros — instead
//     of the paper's per-token keys with its outlier channel balancer,
//     since per-channel key groups already absorb the outlier channels the
//     balancer targets;
//   - only full blocks are sealed (every full one: Residual 0), so the
//     partial last block stays exact and counts as important.
type MiKV struct {
	// Importance scores the tokens (higher: more important); nil means
	// observed attention, normalized by the queries that saw each token.
	Importance Scorer
}

func init() {
	register("mikv", func() (Scorer, Budget) {
		return MiKV{}, MixedPrecision{Low: kvcache.Int2}
	})
}

// Needs implements Scorer: what Importance needs (attention sums by
// default).
func (p MiKV) Needs() Needs {
	if p.Importance != nil {
		return p.Importance.Needs()
	}
	return Needs{Attention: true}
}

// Score implements Scorer: Importance's scores.
func (p MiKV) Score(s *State) [][]float32 {
	if p.Importance != nil {
		return p.Importance.Score(s)
	}
	return normalizedAttention(s)
}
