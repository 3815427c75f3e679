// Package model loads Hugging Face model folders and runs their forward
// pass: embeddings, decoder layers, final norm and logits, for the Llama,
// Qwen2, Qwen3, Mistral and Gemma 3 families. It reads and writes keys and
// values through a kvcache.Seq and leaves scheduling and sampling to others.
package model

import (
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// Layer holds one decoder layer's weights.
type Layer struct {
	AttnNorm     []float32 // input_layernorm
	PostAttnNorm []float32 // Gemma 3: after attention, before the residual
	MLPNorm      []float32 // post_attention_layernorm (pre_feedforward in Gemma 3)
	PostMLPNorm  []float32 // Gemma 3: after the MLP, before the residual

	Q, K, V, O          *compute.Mat
	QBias, KBias, VBias []float32
	QNorm, KNorm        []float32 // per-head RMSNorm weights (Qwen3, Gemma 3)

	Gate, Up, Down *compute.Mat

	ropeIndex int // index of this layer's RoPE table in Model.ropes
}

// Model is a loaded model, ready to run.
type Model struct {
	Config *Config
	Embed  *compute.Mat // vocab × hidden
	Layers []Layer
	Norm   []float32
	Head   *compute.Mat // vocab × hidden; Embed when tied

	pool     *compute.Pool
	numerics compute.Numerics // how matrix products round activations
	weights  *weights
	ropes    []*ropeTable // distinct RoPE variants (two in Gemma 3)

	mu sync.Mutex // guards ws: one forward pass at a time
	ws workspace
}

// SetNumerics sets how the model's matrix products treat activations (see
// compute.Numerics); a loaded model starts Exact. Call it before the first
// forward pass.
func (m *Model) SetNumerics(n compute.Numerics) { m.numerics = n }

// Numerics returns the model's numerics.
func (m *Model) Numerics() compute.Numerics { return m.numerics }

// matMul runs one matrix product on the model's pool in its numerics.
func (m *Model) matMul(y, x []float32, n int, w *compute.Mat) {
	m.pool.MatMulIn(m.numerics, y, x, n, w)
}

// Load reads config.json and the safetensors weights of a model folder.
// pool runs the kernels; it may be shared by several models.
func Load(src Source, pool *compute.Pool) (*Model, error) {
	data, err := src.ReadFile("config.json")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Name(), err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Name(), err)
	}
	w, err := openWeights(src)
	if err != nil {
		return nil, err
	}
	if err := cfg.checkWeightBytes(w.bytes()); err != nil {
		w.close()
		return nil, fmt.Errorf("%s: %w", src.Name(), err)
	}
	m := &Model{Config: cfg, pool: pool, weights: w}
	if err := m.bind(w); err != nil {
		w.close()
		return nil, err
	}
	return m, nil
}

// Close releases the mapped weight files. The model must not be used after.
func (m *Model) Close() error { return m.weights.close() }

// Pool returns the worker pool the model computes with.
func (m *Model) Pool() *compute.Pool { return m.pool }

// WeightBytes returns the bytes the weight matrices take as stored.
func (m *Model) WeightBytes() int64 {
	b := m.Embed.Bytes()
	if m.Head != m.Embed {
		b += m.Head.Bytes()
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, w := range []*compute.Mat{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down} {
			b += w.Bytes()
		}
	}
	return b
}

// NewCache returns an empty KV cache shaped for this model.
func (m *Model) NewCache() *kvcache.Seq {
	c := m.Config
	return kvcache.New(c.Layers, c.KVHeads, c.HeadDim)
}

// bind looks up every tensor the forward pass needs and checks its shape.
func (m *Model) bind(w *weights) error {
	c := m.Config
	prefix := ""
	for _, p := range []string{"model.", "model.language_model.", "language_model.model."} {
		if w.has(p + "embed_tokens.weight") {
			prefix = p
			break
		}
	}
	if prefix == "" {
		return fmt.Errorf("%s: missing tensor %q", w.src.Name(), "model.embed_tokens.weight")
	}
	var err error
	mat := func(name string, rows, cols int) *compute.Mat {
		if err != nil {
			return nil
		}
		var t *compute.Mat
		t, err = w.mat(name, rows, cols)
		return t
	}
	vec := func(name string, n int) []float32 {
		if err != nil {
			return nil
		}
		var v []float32
		v, err = w.vec(name, n)
		return v
	}
	h, qd, kvd := c.HiddenSize, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	m.Embed = mat(prefix+"embed_tokens.weight", c.VocabSize, h)
	m.Norm = vec(prefix+"norm.weight", h)
	m.Layers = make([]Layer, c.Layers)
	ropeIndex := map[Rope]int{}
	for i := range m.Layers {
		p := fmt.Sprintf("%slayers.%d.", prefix, i)
		l := &m.Layers[i]
		l.AttnNorm = vec(p+"input_layernorm.weight", h)
		l.Q = mat(p+"self_attn.q_proj.weight", qd, h)
		l.K = mat(p+"self_attn.k_proj.weight", kvd, h)
		l.V = mat(p+"self_attn.v_proj.weight", kvd, h)
		l.O = mat(p+"self_attn.o_proj.weight", h, qd)
		if c.AttentionBias {
			l.QBias = vec(p+"self_attn.q_proj.bias", qd)
			l.KBias = vec(p+"self_attn.k_proj.bias", kvd)
			l.VBias = vec(p+"self_attn.v_proj.bias", kvd)
		}
		if c.QKNorm {
			l.QNorm = vec(p+"self_attn.q_norm.weight", c.HeadDim)
			l.KNorm = vec(p+"self_attn.k_norm.weight", c.HeadDim)
		}
		if c.SandwichNorm {
			l.PostAttnNorm = vec(p+"post_attention_layernorm.weight", h)
			l.MLPNorm = vec(p+"pre_feedforward_layernorm.weight", h)
			l.PostMLPNorm = vec(p+"post_feedforward_layernorm.weight", h)
		} else {
			l.MLPNorm = vec(p+"post_attention_layernorm.weight", h)
		}
		l.Gate = mat(p+"mlp.gate_proj.weight", c.IntermediateSize, h)
		l.Up = mat(p+"mlp.up_proj.weight", c.IntermediateSize, h)
		l.Down = mat(p+"mlp.down_proj.weight", h, c.IntermediateSize)
		r := c.LayerRope(i)
		idx, ok := ropeIndex[r]
		if !ok {
			idx = len(m.ropes)
			ropeIndex[r] = idx
			m.ropes = append(m.ropes, newRopeTable(r, c.HeadDim))
		}
		l.ropeIndex = idx
	}
	if c.TieEmbeddings || !w.has("lm_head.weight") {
		if !c.TieEmbeddings && err == nil {
			return fmt.Errorf("%s: missing tensor %q (tie_word_embeddings is false)", w.src.Name(), "lm_head.weight")
		}
		m.Head = m.Embed
	} else {
		m.Head = mat("lm_head.weight", c.VocabSize, h)
	}
	if err != nil {
		return err
	}
	var unused []string
	for n := range w.tensors {
		if !w.used[n] && n != "lm_head.weight" && !isRotaryBuffer(n) {
			unused = append(unused, n)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		return fmt.Errorf("%s: %d tensors this %s loader does not use, e.g. %q: is the architecture right?", w.src.Name(), len(unused), c.Family, unused[0])
	}
	return nil
}

func isRotaryBuffer(name string) bool {
	const s = "rotary_emb.inv_freq"
	return len(name) >= len(s) && name[len(name)-len(s):] == s
}

// ropeTable holds a RoPE variant's inverse frequencies, one per pair of
// dimensions, computed in float32 as transformers does.
type ropeTable struct {
	invFreq []float32
	scale   float32 // attention_scaling (1 for the supported types)
}

func newRopeTable(r Rope, headDim int) *ropeTable {
	half := headDim / 2
	t := &ropeTable{invFreq: make([]float32, half), scale: 1}
	for i := range half {
		exp := float32(2*i) / float32(headDim)
		t.invFreq[i] = float32(1 / math.Pow(r.Theta, float64(exp)))
	}
	switch r.Type {
	case "linear":
		for i := range t.invFreq {
			t.invFreq[i] /= float32(r.Factor)
		}
	case "llama3":
		old := float64(r.OriginalMaxPositions)
		lowWavelen := old / r.LowFreqFactor
		highWavelen := old / r.HighFreqFactor
		for i, f := range t.invFreq {
			wavelen := 2 * math.Pi / float64(f)
			switch {
			case wavelen < highWavelen: // high frequency: unchanged
			case wavelen > lowWavelen:
				t.invFreq[i] = f / float32(r.Factor)
			default:
				smooth := (old/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				t.invFreq[i] = float32((1-smooth)*float64(f)/r.Factor + smooth*float64(f))
			}
		}
	}
	return t
}

// RopeInvFreq returns the RoPE inverse frequencies of layer l (one per pair
// of dimensions), for methods that rotate queries themselves.
func (m *Model) RopeInvFreq(l int) []float32 { return m.ropes[m.Layers[l].ropeIndex].invFreq }

// NewPool returns a KV block pool shaped for this model, storing keys and
// values in the given format under a byte budget (0: none).
func (m *Model) NewPool(budget int64, format kvcache.Format) *kvcache.Pool {
	c := m.Config
	return kvcache.NewPool(kvcache.PoolConfig{Layers: c.Layers, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Budget: budget, Format: format})
}
