package model

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Family names the forward-pass variant an architecture uses.
type Family string

// The families kvserve runs.
const (
	Llama   Family = "llama"   // LlamaForCausalLM (llama3 RoPE scaling included)
	Qwen2   Family = "qwen2"   // Qwen2ForCausalLM: q/k/v biases
	Qwen3   Family = "qwen3"   // Qwen3ForCausalLM: q/k RMSNorm
	Mistral Family = "mistral" // MistralForCausalLM: sliding window
	Gemma3  Family = "gemma3"  // Gemma3ForCausalLM (text): sandwich norms, GeGLU
)

var architectures = map[string]Family{
	"LlamaForCausalLM":               Llama,
	"Qwen2ForCausalLM":               Qwen2,
	"Qwen3ForCausalLM":               Qwen3,
	"MistralForCausalLM":             Mistral,
	"Gemma3ForCausalLM":              Gemma3,
	"Gemma3ForConditionalGeneration": Gemma3,
}

// Rope describes rotary position embeddings for one kind of layer.
type Rope struct {
	Theta float64
	Type  string // "default", "linear", "llama3"
	// Factor scales positions ("linear") or frequencies ("llama3").
	Factor float64
	// llama3 parameters.
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          int
}

// Config is the part of a Hugging Face config.json that the forward pass
// needs, normalised across families and transformers versions.
type Config struct {
	Family           Family
	Architecture     string
	HiddenSize       int
	IntermediateSize int
	Layers           int
	Heads            int
	KVHeads          int
	HeadDim          int
	VocabSize        int
	MaxPositions     int
	RMSNormEps       float32
	TieEmbeddings    bool
	AttentionBias    bool // biases on q, k and v (Qwen2 always)
	QKNorm           bool // RMSNorm on each head of q and k (Qwen3, Gemma 3)
	SandwichNorm     bool // norms before and after attention and MLP (Gemma 3)
	NormAddOne       bool // RMSNorm scales by (1 + w) (Gemma)
	EmbedScale       float32
	Activation       string // "silu" or "gelu_pytorch_tanh"
	// AttnScale multiplies q·k; 1/√head_dim unless query_pre_attn_scalar says.
	AttnScale float32
	// SlidingWindow is the number of most recent tokens (the query included)
	// a sliding layer attends to; 0 means no sliding layers.
	SlidingWindow int
	// Sliding[l] is true for layers that use the sliding window.
	Sliding []bool
	// RopeFull and RopeSliding are the RoPE settings of full and sliding
	// layers (the same except in Gemma 3).
	RopeFull, RopeSliding Rope
	FinalSoftcap          float32
	AttnSoftcap           float32
	BOS                   int // -1 when none
	EOS                   []int
}

// LayerRope returns the RoPE settings of layer l.
func (c *Config) LayerRope(l int) Rope {
	if c.Sliding[l] {
		return c.RopeSliding
	}
	return c.RopeFull
}

type rawConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            int             `json:"hidden_size"`
	IntermediateSize      int             `json:"intermediate_size"`
	NumHiddenLayers       int             `json:"num_hidden_layers"`
	NumAttentionHeads     int             `json:"num_attention_heads"`
	NumKeyValueHeads      int             `json:"num_key_value_heads"`
	HeadDim               int             `json:"head_dim"`
	VocabSize             int             `json:"vocab_size"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RMSNormEps            float64         `json:"rms_norm_eps"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         bool            `json:"attention_bias"`
	HiddenAct             string          `json:"hidden_act"`
	HiddenActivation      string          `json:"hidden_activation"`
	RopeTheta             float64         `json:"rope_theta"`
	RopeLocalBaseFreq     float64         `json:"rope_local_base_freq"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	RopeParameters        json.RawMessage `json:"rope_parameters"`
	SlidingWindow         *int            `json:"sliding_window"`
	UseSlidingWindow      *bool           `json:"use_sliding_window"`
	MaxWindowLayers       int             `json:"max_window_layers"`
	LayerTypes            []string        `json:"layer_types"`
	SlidingWindowPattern  int             `json:"sliding_window_pattern"`
	SlidingWindowPattern2 int             `json:"_sliding_window_pattern"`
	QueryPreAttnScalar    float64         `json:"query_pre_attn_scalar"`
	FinalLogitSoftcapping *float64        `json:"final_logit_softcapping"`
	AttnLogitSoftcapping  *float64        `json:"attn_logit_softcapping"`
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
	TextConfig            json.RawMessage `json:"text_config"`
}

type rawRope struct {
	RopeTheta                     float64 `json:"rope_theta"`
	RopeType                      string  `json:"rope_type"`
	Type                          string  `json:"type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// ParseConfig reads a Hugging Face config.json.
func ParseConfig(data []byte) (*Config, error) {
	var r rawConfig
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	arch := ""
	if len(r.Architectures) > 0 {
		arch = r.Architectures[0]
	}
	fam, ok := architectures[arch]
	if !ok {
		known := make([]string, 0, len(architectures))
		for a := range architectures {
			known = append(known, a)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("config.json: unsupported architecture %q (model_type %q); kvserve runs %s", arch, r.ModelType, strings.Join(known, ", "))
	}
	if fam == Gemma3 && len(r.TextConfig) > 0 && r.HiddenSize == 0 {
		// A multimodal Gemma 3 config: the language model is in text_config.
		var t rawConfig
		if err := json.Unmarshal(r.TextConfig, &t); err != nil {
			return nil, fmt.Errorf("config.json: text_config: %w", err)
		}
		t.Architectures = r.Architectures
		r = t
	}
	c := &Config{
		Family:           fam,
		Architecture:     arch,
		HiddenSize:       r.HiddenSize,
		IntermediateSize: r.IntermediateSize,
		Layers:           r.NumHiddenLayers,
		Heads:            r.NumAttentionHeads,
		KVHeads:          r.NumKeyValueHeads,
		HeadDim:          r.HeadDim,
		VocabSize:        r.VocabSize,
		MaxPositions:     r.MaxPositionEmbeddings,
		RMSNormEps:       float32(r.RMSNormEps),
		AttentionBias:    r.AttentionBias || fam == Qwen2,
		QKNorm:           fam == Qwen3 || fam == Gemma3,
		SandwichNorm:     fam == Gemma3,
		NormAddOne:       fam == Gemma3,
		EmbedScale:       1,
		Activation:       "silu",
		BOS:              -1,
	}
	if r.HiddenAct != "" {
		c.Activation = r.HiddenAct
	}
	if r.HiddenActivation != "" {
		c.Activation = r.HiddenActivation
	}
	if c.Activation == "gelu_pytorch_tanh" || c.Activation == "gelu_tanh" {
		c.Activation = "gelu_pytorch_tanh"
	} else if c.Activation != "silu" {
		return nil, fmt.Errorf("config.json: unsupported activation %q (want silu or gelu_pytorch_tanh)", c.Activation)
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize}, {"num_hidden_layers", c.Layers}, {"num_attention_heads", c.Heads}, {"vocab_size", c.VocabSize}} {
		if f.v <= 0 {
			return nil, fmt.Errorf("config.json: %s is %d, want a positive number", f.name, f.v)
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("config.json: num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	}
	if c.HeadDim == 0 {
		if c.HiddenSize%c.Heads != 0 {
			return nil, fmt.Errorf("config.json: no head_dim and hidden_size %d is not divisible by %d heads", c.HiddenSize, c.Heads)
		}
		c.HeadDim = c.HiddenSize / c.Heads
	}
	// Bounded before parseLayers and the RoPE tables allocate from them.
	if c.HeadDim <= 0 || c.HeadDim > maxConfigHeadDim {
		return nil, fmt.Errorf("config.json: head_dim is %d, want an integer in [1, %d]", c.HeadDim, maxConfigHeadDim)
	}
	if c.Layers > maxConfigLayers {
		return nil, fmt.Errorf("config.json: num_hidden_layers is %d, want an integer in [1, %d]", c.Layers, maxConfigLayers)
	}
	if c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("config.json: head_dim %d must be even for RoPE", c.HeadDim)
	}
	if c.MaxPositions <= 0 {
		c.MaxPositions = 4096
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	// Tied embeddings: the transformers default is true for Gemma/Qwen configs
	// that omit it, false for Llama and Mistral.
	if r.TieWordEmbeddings != nil {
		c.TieEmbeddings = *r.TieWordEmbeddings
	} else {
		c.TieEmbeddings = fam == Gemma3
	}
	c.AttnScale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	if fam == Gemma3 {
		c.EmbedScale = float32(math.Sqrt(float64(c.HiddenSize)))
		if r.QueryPreAttnScalar > 0 {
			c.AttnScale = float32(1 / math.Sqrt(r.QueryPreAttnScalar))
		}
	}
	if r.FinalLogitSoftcapping != nil {
		c.FinalSoftcap = float32(*r.FinalLogitSoftcapping)
	}
	if r.AttnLogitSoftcapping != nil {
		c.AttnSoftcap = float32(*r.AttnLogitSoftcapping)
	}
	if err := c.parseLayers(&r); err != nil {
		return nil, err
	}
	if err := c.parseRope(&r); err != nil {
		return nil, err
	}
	c.BOS = firstID(r.BOSTokenID, -1)
	c.EOS = idList(r.EOSTokenID)
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) parseLayers(r *rawConfig) error {
	c.Sliding = make([]bool, c.Layers)
	window := 0
	if r.SlidingWindow != nil {
		window = *r.SlidingWindow
	}
	if r.UseSlidingWindow != nil && !*r.UseSlidingWindow {
		window = 0
	}
	if window <= 0 {
		return nil
	}
	c.SlidingWindow = window
	switch {
	case len(r.LayerTypes) > 0:
		if len(r.LayerTypes) != c.Layers {
			return fmt.Errorf("config.json: layer_types has %d entries for %d layers", len(r.LayerTypes), c.Layers)
		}
		for l, t := range r.LayerTypes {
			switch t {
			case "sliding_attention":
				c.Sliding[l] = true
			case "full_attention":
			default:
				return fmt.Errorf("config.json: layer_types[%d] is %q, want sliding_attention or full_attention", l, t)
			}
		}
	case c.Family == Gemma3:
		pattern := r.SlidingWindowPattern
		if pattern == 0 {
			pattern = r.SlidingWindowPattern2
		}
		if pattern == 0 {
			pattern = 6
		}
		for l := range c.Sliding {
			c.Sliding[l] = (l+1)%pattern != 0
		}
	case c.Family == Qwen2 || c.Family == Qwen3:
		// Qwen: layers from max_window_layers on use the window.
		for l := range c.Sliding {
			c.Sliding[l] = l >= r.MaxWindowLayers
		}
	default:
		for l := range c.Sliding {
			c.Sliding[l] = true
		}
	}
	return nil
}

func (c *Config) parseRope(r *rawConfig) error {
	base := Rope{Theta: r.RopeTheta, Type: "default", Factor: 1}
	if base.Theta == 0 {
		base.Theta = 10000
	}
	c.RopeFull, c.RopeSliding = base, base
	if r.RopeLocalBaseFreq > 0 {
		c.RopeSliding.Theta = r.RopeLocalBaseFreq
	}
	if isNull(r.RopeParameters) {
		if !isNull(r.RopeScaling) {
			var rs rawRope
			if err := json.Unmarshal(r.RopeScaling, &rs); err != nil {
				return fmt.Errorf("config.json: rope_scaling: %w", err)
			}
			rope, err := rs.rope(base.Theta)
			if err != nil {
				return err
			}
			c.RopeFull = rope
			if c.Family != Gemma3 { // Gemma 3 scales only its global layers
				c.RopeSliding = rope
			}
		}
		return nil
	}
	// transformers 5: rope_parameters is either one set, or one per layer type.
	var perType map[string]json.RawMessage
	if err := json.Unmarshal(r.RopeParameters, &perType); err != nil {
		return fmt.Errorf("config.json: rope_parameters: %w", err)
	}
	if _, ok := perType["full_attention"]; ok {
		for key, dst := range map[string]*Rope{"full_attention": &c.RopeFull, "sliding_attention": &c.RopeSliding} {
			raw, ok := perType[key]
			if !ok {
				continue
			}
			var rs rawRope
			if err := json.Unmarshal(raw, &rs); err != nil {
				return fmt.Errorf("config.json: rope_parameters.%s: %w", key, err)
			}
			rope, err := rs.rope(base.Theta)
			if err != nil {
				return err
			}
			*dst = rope
		}
		return nil
	}
	var rs rawRope
	if err := json.Unmarshal(r.RopeParameters, &rs); err != nil {
		return fmt.Errorf("config.json: rope_parameters: %w", err)
	}
	rope, err := rs.rope(base.Theta)
	if err != nil {
		return err
	}
	c.RopeFull, c.RopeSliding = rope, rope
	return nil
}

func (rs *rawRope) rope(defaultTheta float64) (Rope, error) {
	t := rs.RopeType
	if t == "" {
		t = rs.Type
	}
	if t == "" {
		t = "default"
	}
	out := Rope{Theta: rs.RopeTheta, Type: t, Factor: rs.Factor,
		LowFreqFactor: rs.LowFreqFactor, HighFreqFactor: rs.HighFreqFactor,
		OriginalMaxPositions: rs.OriginalMaxPositionEmbeddings}
	if out.Theta == 0 {
		out.Theta = defaultTheta
	}
	if out.Factor == 0 {
		out.Factor = 1
	}
	switch t {
	case "default":
	case "linear":
	case "llama3":
		if out.LowFreqFactor <= 0 || out.HighFreqFactor <= out.LowFreqFactor || out.OriginalMaxPositions <= 0 {
			return out, fmt.Errorf("config.json: llama3 RoPE needs low_freq_factor < high_freq_factor and original_max_position_embeddings, got %+v", *rs)
		}
	default:
		return out, fmt.Errorf("config.json: unsupported rope_type %q (kvserve supports default, linear, llama3)", t)
	}
	return out, nil
}

func isNull(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s == "" || s == "null"
}

// idList reads a token id field that may be null, a number or a list.
func idList(m json.RawMessage) []int {
	if isNull(m) {
		return nil
	}
	var one int
	if json.Unmarshal(m, &one) == nil {
		return []int{one}
	}
	var many []int
	if json.Unmarshal(m, &many) == nil {
		return many
	}
	return nil
}

func firstID(m json.RawMessage, def int) int {
	if ids := idList(m); len(ids) > 0 {
		return ids[0]
	}
	return def
}
