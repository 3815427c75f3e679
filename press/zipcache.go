package press

import "github.com/kvserve/kvserve/kvcache"

// ZipCache stores salient tokens in 4 bits and the rest in 2 bits, with
// saliency the normalized attention score: the attention a token received,
// summed over the queries, divided by the number of queries that could see
// it (so early tokens are not favoured just for being seen more often).
// He et al., "ZipCache: Accurate and Efficient KV Cache Quantization with
// Salient Token Identification" (arXiv:2405.14256). Its press "zipcache"
// runs at ratio r = the fraction of each head's tokens stored in 2 bits
// (MixedPrecision); the rest stay in 4 bits.
//
// Choices where the paper leaves room or where this cache differs:
//   - saliency is exact, not estimated from probe tokens: the forward pass
//     accumulates every query's attention per cached token without
//     materialising the attention matrix (model.Observer.Attention), which
//     is what the probes stand in for; scores are averaged over the query
//     heads of the GQA group;
//   - keys are quantized per channel and values per token (METHODS.md),
//     with KIVI's groups: each precision of a block is its own group of
//     tokens for the key scales, values use groups of 32 channels — not
//     the paper's channel-separable token-wise keys;
//   - the paper recompresses every 100 decoding steps; here only full
//     blocks are sealed, the partial last block stays exact (and counts as
//     salient), and running the press again seals the blocks filled since
//     (tokens the observer did not see count as salient).
type ZipCache struct{}

func init() {
	register("zipcache", func() (Scorer, Budget) {
		return ZipCache{}, MixedPrecision{High: kvcache.Int4, Low: kvcache.Int2}
	})
}

// Needs implements Scorer: attention sums.
func (ZipCache) Needs() Needs { return Needs{Attention: true} }

// Score implements Scorer: the normalized attention score.
func (ZipCache) Score(s *State) [][]float32 { return normalizedAttention(s) }
