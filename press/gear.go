package press

import (
	"fmt"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// GEAR stores the cache as KIVI-style codes plus two corrections of the
// quantization error: a low-rank part (rank 4 for the prompt, 2 for
// segments sealed during decoding, found by power iteration) and a sparse
// set of outlier entries (2 % of each block's entries) kept exact up to
// float16. Kang et al., "GEAR: An Efficient KV Cache Compression Recipe
// for Near-Lossless Generative Inference of LLM", arXiv:2403.05527.
//
// Choices (kvcache.GEARConfig and gear.go hold the details):
//   - the base quantizer is kvcache's KIVI layout (keys per channel over
//     a 32-token block, values per token over 32 channels); GEAR's
//     reference groups 64 — the pool's block is the group here, finer and
//     so slightly more accurate, at one more float16 scale and zero per
//     group;
//   - outliers are taken out before quantizing (GEAR's order: S, then
//     D̂ = Q(X − S), then L ≈ X − S − D̂): per block, the 2 % of entries
//     farthest from their quantization group's median in units of its
//     median absolute deviation (GEAR's reference takes the largest and
//     smallest s/2 % of each vector); the sparse value stored is the
//     correction X − D̂ − L at that entry, so the three parts add up;
//   - the low-rank part spans one segment — the blocks sealed by one call
//     in one head — with rank 4 for a head's first segment and 2 for
//     later ones, 3 power (subspace) iterations from a fixed start;
//   - the newest 64 tokens (GEAR's streaming buffer n_b = 64) stay in full
//     precision, in whole blocks: between 64 and 95 of them.
//
// Bytes are counted exactly: codes, float16 scales and zeros, both
// factors in float16, and 4 bytes per sparse entry (uint16 index, float16
// value). GEAR keeps every token: like KIVI it is a Quantizer that ignores
// the ratio; compose it after an eviction method ("keydiff+gear4").
type GEAR struct {
	kvcache.GEARConfig
}

// Reference parameters of GEAR (arXiv:2403.05527).
const (
	gearRank       = 4
	gearDecodeRank = 2
	gearSparsity   = 0.02
	gearBuffer     = 64
	gearIters      = 3
)

func init() {
	for _, f := range []kvcache.Format{kvcache.Int2, kvcache.Int3, kvcache.Int4} {
		for _, buf := range []int{gearBuffer, ShortResidual} {
			g := GEAR{kvcache.GEARConfig{Format: f, Residual: buf, Rank: gearRank, DecodeRank: gearDecodeRank,
				Sparsity: gearSparsity, Iters: gearIters}}
			quantizers[g.Name()] = g
		}
	}
}

// Name returns the press name: gear2, gear3 or gear4 with GEAR's 64-token
// buffer, gear4r32 and the like with a one-block buffer.
func (g GEAR) Name() string {
	if g.Residual == gearBuffer {
		return fmt.Sprintf("gear%d", g.Format.Bits())
	}
	return fmt.Sprintf("gear%dr%d", g.Format.Bits(), g.Residual)
}

// Quantize implements Quantizer: it seals every block older than the
// streaming buffer in GEAR's layout (kvcache.Seq.GEARQuantize).
func (g GEAR) Quantize(seq *kvcache.Seq) error {
	if err := seq.GEARQuantize(g.GEARConfig); err != nil {
		return fmt.Errorf("press %s: %w", g.Name(), err)
	}
	return nil
}

// StageLayer implements LayerStage: Quantize for layer l alone.
func (g GEAR) StageLayer(_ *model.Model, seq *kvcache.Seq, _ *model.Observer, _ float64, l int) error {
	if err := seq.GEARQuantizeLayer(l, g.GEARConfig); err != nil {
		return fmt.Errorf("press %s: %w", g.Name(), err)
	}
	return nil
}

// Needs implements Scorer: nothing.
func (GEAR) Needs() Needs { return Needs{} }

// Score implements Scorer: every token alike (GEAR evicts nothing).
func (GEAR) Score(s *State) [][]float32 { return flatScores(s) }
