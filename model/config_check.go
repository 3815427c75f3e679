package model

import (
	"fmt"
	"math"
)

// Bounds on the sizes a config.json may give, as the GGUF loader bounds
// its metadata (ggufMaxDim): far above any real model, low enough that
// products of them cannot overflow and that nothing is allocated from a
// number a file made up. A config that passes still has to match its
// weights: Load compares the parameters it describes with the bytes the
// weight files hold before it allocates anything.
const (
	maxConfigDim     = 1 << 24 // hidden_size, intermediate_size, vocab_size, max_position_embeddings
	maxConfigLayers  = 1 << 12
	maxConfigHeads   = 1 << 12
	maxConfigHeadDim = 1 << 12
	// The width of all query heads together (16 384 in the largest
	// models of 2025).
	maxConfigHeadsDim = 1 << 20
)

// check validates c's numbers: positive, bounded, consistent.
func (c *Config) check() error {
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"hidden_size", c.HiddenSize, maxConfigDim},
		{"intermediate_size", c.IntermediateSize, maxConfigDim},
		{"num_hidden_layers", c.Layers, maxConfigLayers},
		{"num_attention_heads", c.Heads, maxConfigHeads},
		{"num_key_value_heads", c.KVHeads, maxConfigHeads},
		{"head_dim", c.HeadDim, maxConfigHeadDim},
		{"vocab_size", c.VocabSize, maxConfigDim},
		{"max_position_embeddings", c.MaxPositions, maxConfigDim},
	} {
		if f.v <= 0 || f.v > f.max {
			return fmt.Errorf("config.json: %s is %d, want an integer in [1, %d]", f.name, f.v, f.max)
		}
	}
	if c.KVHeads > c.Heads {
		return fmt.Errorf("config.json: num_key_value_heads %d is more than num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if qd := c.Heads * c.HeadDim; qd > maxConfigHeadsDim {
		return fmt.Errorf("config.json: num_attention_heads × head_dim is %d, more than %d", qd, maxConfigHeadsDim)
	}
	if c.SlidingWindow < 0 || c.SlidingWindow > maxConfigDim {
		return fmt.Errorf("config.json: sliding_window is %d, want an integer in [0, %d]", c.SlidingWindow, maxConfigDim)
	}
	finite := func(name string, v float64, positive bool) error {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (positive && v == 0) {
			want := "a finite number ≥ 0"
			if positive {
				want = "a finite number > 0"
			}
			return fmt.Errorf("config.json: %s is %v, want %s", name, v, want)
		}
		return nil
	}
	for _, f := range []struct {
		name     string
		v        float64
		positive bool
	}{
		{"rms_norm_eps", float64(c.RMSNormEps), true},
		{"attention scale (query_pre_attn_scalar)", float64(c.AttnScale), true},
		{"final_logit_softcapping", float64(c.FinalSoftcap), false},
		{"attn_logit_softcapping", float64(c.AttnSoftcap), false},
		{"rope_theta", c.RopeFull.Theta, true},
		{"rope_local_base_freq", c.RopeSliding.Theta, true},
		{"rope factor", c.RopeFull.Factor, true},
		{"rope factor (sliding layers)", c.RopeSliding.Factor, true},
		{"low_freq_factor", c.RopeFull.LowFreqFactor, false},
		{"high_freq_factor", c.RopeFull.HighFreqFactor, false},
	} {
		if err := finite(f.name, f.v, f.positive); err != nil {
			return err
		}
	}
	return nil
}

// Params returns the number of weights the config describes: the
// embedding (and the output head when not tied) and every layer's
// attention and MLP matrices.
func (c *Config) Params() int64 {
	h, inter := int64(c.HiddenSize), int64(c.IntermediateSize)
	qd, kvd := int64(c.Heads)*int64(c.HeadDim), int64(c.KVHeads)*int64(c.HeadDim)
	embed := int64(c.VocabSize) * h
	if !c.TieEmbeddings {
		embed *= 2
	}
	layer := 2*h*qd + 2*h*kvd + 3*h*inter
	return embed + int64(c.Layers)*layer
}

// checkWeightBytes compares the parameters c describes with the bytes of
// the weight files, at least one byte a weight in any format they may be
// stored in, before anything is allocated from c's numbers.
func (c *Config) checkWeightBytes(stored int64) error {
	if p := c.Params(); p > stored {
		return fmt.Errorf("config.json describes %d weights (hidden_size %d, %d layers, %d×%d query and %d×%d key/value heads, intermediate_size %d, vocab_size %d) but the weight files hold %d bytes: the config does not belong to these weights",
			p, c.HiddenSize, c.Layers, c.Heads, c.HeadDim, c.KVHeads, c.HeadDim, c.IntermediateSize, c.VocabSize, stored)
	}
	return nil
}

// bytes returns the bytes of all tensors of the weight files.
func (w *weights) bytes() int64 {
	var n int64
	for _, t := range w.tensors {
		n += int64(len(t.Data))
	}
	return n
}
