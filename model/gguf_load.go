package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/gguf"
	"github.com/kvserve/kvserve/internal/mmap"
)

// GGUF architectures (general.architecture) that LoadGGUF runs, and the
// family each maps to. Mistral models converted by llama.cpp say "llama".
var ggufFamilies = map[string]Family{
	"llama":  Llama,
	"qwen2":  Qwen2,
	"qwen3":  Qwen3,
	"gemma3": Gemma3,
}

// ggufMaxDim bounds every size read from metadata before it is multiplied
// or used to allocate; the tensor shapes then pin the real sizes.
const ggufMaxDim = 1 << 24

// LoadGGUF memory-maps a GGUF file (llama.cpp's single-file format) and
// builds a Model from it. The mapping stays open until Model.Close; the
// returned File's tensor Data alias it and must not be used after Close
// (its metadata are copies and stay valid).
//
// Weights are used as stored where the kernels can: BF16, F32, Q8_0, Q4_0,
// Q5_0, Q4_K and Q6_K matrices in place in the mapping (the layouts llama.cpp
// computes on), F16 widened to F32. Q4_1 is converted to compute.Q4 (0.75
// bytes per weight, every value kept: see compute.Q4FromGGML). Other
// quantized types (Q5_1, Q5_K, Q3_K, …) are dequantized to F32 at load, at 4
// bytes per weight. GGUFMatDType tells which type a matrix gets.
// llama.cpp's row permutation of Llama's attn_q and attn_k is undone in a
// copy, and the copied tensor's pages are released from memory; Gemma 3's
// norm weights, which llama.cpp stores with 1 added, are used as
// multipliers (Config.NormAddOne is false).
func LoadGGUF(path string, pool *compute.Pool) (*Model, *gguf.File, error) {
	mf, err := mmap.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := gguf.Parse(mf.Bytes())
	if err != nil {
		mf.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := GGUFConfig(f)
	if err != nil {
		mf.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &Model{Config: cfg, pool: pool, weights: &weights{src: Source{Dir: path}, closers: []func() error{mf.Close}}}
	if err := m.bindGGUF(f, mf.Release); err != nil {
		mf.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, f, nil
}

// ggufMeta reads architecture-specific metadata, keeping the first error.
type ggufMeta struct {
	f    *gguf.File
	arch string
	err  error
}

// key returns the full name of an architecture key.
func (g *ggufMeta) key(name string) string { return g.arch + "." + name }

// int reads a non-negative integer key; def is returned when the key is
// absent, and an absent key with required set is an error.
func (g *ggufMeta) int(name string, required bool, def int) int {
	return g.intKey(g.key(name), required, def)
}

func (g *ggufMeta) intKey(key string, required bool, def int) int {
	if g.err != nil {
		return def
	}
	v, ok := g.f.Value(key)
	if !ok {
		if required {
			g.err = fmt.Errorf("metadata %s is missing", key)
		}
		return def
	}
	u, ok := v.AsUint()
	if !ok || u > ggufMaxDim {
		g.err = fmt.Errorf("metadata %s is %v, want an integer in [0, %d]", key, v, ggufMaxDim)
		return def
	}
	return int(u)
}

// float reads a numeric key, or returns def when it is absent.
func (g *ggufMeta) float(name string, required bool, def float64) float64 {
	if g.err != nil {
		return def
	}
	key := g.key(name)
	v, ok := g.f.Value(key)
	if !ok {
		if required {
			g.err = fmt.Errorf("metadata %s is missing", key)
		}
		return def
	}
	x, ok := v.AsFloat()
	if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
		g.err = fmt.Errorf("metadata %s is %v, want a finite number", key, v)
		return def
	}
	return x
}

// str reads a string key, or returns "" when it is absent.
func (g *ggufMeta) str(name string) string {
	if g.err != nil {
		return ""
	}
	key := g.key(name)
	v, ok := g.f.Value(key)
	if !ok {
		return ""
	}
	s, ok := v.AsString()
	if !ok {
		g.err = fmt.Errorf("metadata %s is %s, want a string", key, v.Type)
	}
	return s
}

// GGUFConfig builds the Config of a GGUF file from its metadata (and, for
// the vocabulary size and tied embeddings, its token list and tensor
// names) for the architectures llama, qwen2, qwen3 and gemma3. Absent
// optional keys take llama.cpp's defaults (rope.freq_base 10000, no RoPE
// scaling, no sliding window). Config.Architecture holds the GGUF
// architecture name. For gemma3, NormAddOne is false because llama.cpp
// stores the norm weights with 1 already added; AttnScale follows
// llama.cpp (attention.scale if present, else 1/√head_dim, or
// 1/√(hidden/heads) for the 62-layer Gemma 3 27B).
func GGUFConfig(f *gguf.File) (*Config, error) {
	arch := f.Architecture()
	fam, ok := ggufFamilies[arch]
	if !ok {
		known := make([]string, 0, len(ggufFamilies))
		for a := range ggufFamilies {
			known = append(known, a)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("unsupported GGUF architecture %q (%s); kvserve runs %v", arch, gguf.KeyArchitecture, known)
	}
	g := &ggufMeta{f: f, arch: arch}
	c := &Config{
		Family:           fam,
		Architecture:     arch,
		Layers:           g.int("block_count", true, 0),
		HiddenSize:       g.int("embedding_length", true, 0),
		IntermediateSize: g.int("feed_forward_length", true, 0),
		Heads:            g.int("attention.head_count", true, 0),
		MaxPositions:     g.int("context_length", false, 4096),
		RMSNormEps:       float32(g.float("attention.layer_norm_rms_epsilon", true, 0)),
		AttentionBias:    fam == Qwen2 || f.Tensor("blk.0.attn_q.bias") != nil,
		QKNorm:           fam == Qwen3 || fam == Gemma3,
		SandwichNorm:     fam == Gemma3,
		EmbedScale:       1,
		Activation:       "silu",
		TieEmbeddings:    f.Tensor("output.weight") == nil,
		BOS:              -1,
	}
	c.KVHeads = g.int("attention.head_count_kv", false, c.Heads)
	if g.err != nil {
		return nil, g.err
	}
	for _, k := range []struct {
		name string
		v    int
	}{{"block_count", c.Layers}, {"embedding_length", c.HiddenSize}, {"feed_forward_length", c.IntermediateSize}, {"attention.head_count", c.Heads}, {"attention.head_count_kv", c.KVHeads}} {
		if k.v <= 0 {
			return nil, fmt.Errorf("metadata %s is %d, want a positive number", g.key(k.name), k.v)
		}
	}
	if c.Layers > len(f.Tensors) {
		return nil, fmt.Errorf("metadata %s is %d but the file has only %d tensors", g.key("block_count"), c.Layers, len(f.Tensors))
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("metadata %s %d is not a multiple of %s %d", g.key("attention.head_count"), c.Heads, g.key("attention.head_count_kv"), c.KVHeads)
	}
	def := 0
	if c.HiddenSize%c.Heads == 0 {
		def = c.HiddenSize / c.Heads
	}
	c.HeadDim = g.int("attention.key_length", false, def)
	valueLen := g.int("attention.value_length", false, c.HeadDim)
	ropeDims := g.int("rope.dimension_count", false, c.HeadDim)
	if g.err != nil {
		return nil, g.err
	}
	switch {
	case c.HeadDim <= 0:
		return nil, fmt.Errorf("no %s and %s %d is not divisible by %d heads", g.key("attention.key_length"), g.key("embedding_length"), c.HiddenSize, c.Heads)
	case c.HeadDim%2 != 0:
		return nil, fmt.Errorf("metadata %s %d must be even for RoPE", g.key("attention.key_length"), c.HeadDim)
	case valueLen != c.HeadDim:
		return nil, fmt.Errorf("metadata %s %d differs from %s %d; kvserve needs them equal", g.key("attention.value_length"), valueLen, g.key("attention.key_length"), c.HeadDim)
	case ropeDims != c.HeadDim:
		return nil, fmt.Errorf("metadata %s %d: partial RoPE (head_dim %d) is not supported", g.key("rope.dimension_count"), ropeDims, c.HeadDim)
	}
	if c.RMSNormEps <= 0 {
		return nil, fmt.Errorf("metadata %s is %g, want a positive number", g.key("attention.layer_norm_rms_epsilon"), c.RMSNormEps)
	}
	if c.MaxPositions <= 0 {
		c.MaxPositions = 4096
	}

	// The vocabulary is the token list; token_embd must have one row each.
	if toks, ok := f.Strings(gguf.KeyTokenizerTokens); ok {
		c.VocabSize = len(toks)
	} else {
		c.VocabSize = g.int("vocab_size", false, 0)
		if t := f.Tensor("token_embd.weight"); c.VocabSize == 0 && t != nil && len(t.Dims) == 2 && t.Dims[1] <= ggufMaxDim {
			c.VocabSize = int(t.Dims[1])
		}
	}
	if c.VocabSize <= 0 {
		return nil, fmt.Errorf("no vocabulary size: no %s, %s or token_embd.weight", gguf.KeyTokenizerTokens, g.key("vocab_size"))
	}

	c.AttnScale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	if fam == Gemma3 {
		c.Activation = "gelu_pytorch_tanh"
		c.EmbedScale = float32(math.Sqrt(float64(c.HiddenSize)))
		if c.Layers == 62 { // Gemma 3 27B: query_pre_attn_scalar = hidden/heads
			c.AttnScale = float32(1 / math.Sqrt(float64(c.HiddenSize/c.Heads)))
		}
	}
	if sc := g.float("attention.scale", false, 0); sc > 0 {
		c.AttnScale = float32(sc)
	}
	c.FinalSoftcap = float32(g.float("final_logit_softcapping", false, 0))
	c.AttnSoftcap = float32(g.float("attn_logit_softcapping", false, 0))
	if err := g.layers(c); err != nil {
		return nil, err
	}
	if err := g.rope(c); err != nil {
		return nil, err
	}
	if g.err != nil {
		return nil, g.err
	}

	tok := func(key string) int {
		v, ok := f.Value(key)
		if !ok {
			return -1
		}
		u, ok := v.AsUint()
		if !ok || u >= uint64(c.VocabSize) {
			return -1
		}
		return int(u)
	}
	if add, ok := f.Bool(gguf.KeyTokenizerAddBOS); ok && add {
		c.BOS = tok(gguf.KeyTokenizerBOS)
	}
	for _, id := range []int{tok(gguf.KeyTokenizerEOS), tok(gguf.KeyTokenizerEOT)} {
		if id >= 0 && (len(c.EOS) == 0 || c.EOS[0] != id) {
			c.EOS = append(c.EOS, id)
		}
	}
	return c, nil
}

// layers sets the sliding window and which layers use it.
func (g *ggufMeta) layers(c *Config) error {
	c.Sliding = make([]bool, c.Layers)
	c.SlidingWindow = g.int("attention.sliding_window", false, 0)
	if g.err != nil || c.SlidingWindow == 0 {
		return g.err
	}
	key := g.key("attention.sliding_window_pattern")
	v, ok := g.f.Value(key)
	switch {
	case ok && v.Type == gguf.TypeArray:
		bs, isBools := v.Any().([]bool)
		if !isBools || len(bs) != c.Layers {
			return fmt.Errorf("metadata %s is %v, want %d bools", key, v, c.Layers)
		}
		copy(c.Sliding, bs)
	case ok || c.Family == Gemma3:
		// Every n-th layer is global, the others slide (llama.cpp's
		// swa pattern; Gemma 3's n is 6).
		n := g.int("attention.sliding_window_pattern", false, 6)
		if g.err != nil {
			return g.err
		}
		if n == 0 {
			return fmt.Errorf("metadata %s is 0", key)
		}
		for l := range c.Sliding {
			c.Sliding[l] = (l+1)%n != 0
		}
	default:
		for l := range c.Sliding {
			c.Sliding[l] = true
		}
	}
	return nil
}

// rope sets the RoPE variants. llama.cpp keeps Llama 3's frequency
// scaling in a rope_freqs tensor, which bindGGUF applies.
func (g *ggufMeta) rope(c *Config) error {
	base := Rope{Theta: g.float("rope.freq_base", false, 10000), Type: "default", Factor: 1}
	if base.Theta <= 0 {
		return fmt.Errorf("metadata %s is %g, want a positive number", g.key("rope.freq_base"), base.Theta)
	}
	full := base
	switch typ := g.str("rope.scaling.type"); typ {
	case "", "none":
		if f := g.float("rope.scale_linear", false, 1); f != 1 {
			full.Type, full.Factor = "linear", f
		}
	case "linear":
		full.Type, full.Factor = "linear", g.float("rope.scaling.factor", true, 1)
	default:
		return fmt.Errorf("metadata %s is %q; kvserve supports none and linear (and Llama 3's rope_freqs)", g.key("rope.scaling.type"), typ)
	}
	if full.Factor <= 0 {
		return fmt.Errorf("metadata %s is %g, want a positive number", g.key("rope.scaling.factor"), full.Factor)
	}
	c.RopeFull, c.RopeSliding = full, full
	if c.Family == Gemma3 {
		// Gemma 3's local layers use their own base and no scaling.
		c.RopeSliding = base
		c.RopeSliding.Theta = g.float("rope.freq_base_swa", false, 10000)
	}
	return g.err
}

// ggufBinder looks up tensors by their GGUF names, checks their shapes and
// turns them into matrices and vectors, keeping the first error.
type ggufBinder struct {
	f    *gguf.File
	used map[string]bool
	err  error
	// release, when set, drops a tensor's mapped pages from memory once
	// the loader has copied it (see mmap.File.Release).
	release func([]byte)
}

// tensor returns the named tensor checked against a PyTorch-order shape.
func (b *ggufBinder) tensor(name string, shape ...int) *gguf.Tensor {
	if b.err != nil {
		return nil
	}
	t := b.f.Tensor(name)
	if t == nil {
		b.err = fmt.Errorf("missing tensor %q", name)
		return nil
	}
	if !equalShape(t.Shape(), shape) {
		b.err = fmt.Errorf("tensor %q has shape %v (GGUF dims %v), want %v", name, t.Shape(), t.Dims, shape)
		return nil
	}
	b.used[name] = true
	return t
}

// mat returns a rows × cols matrix. With heads > 0 the rows are in
// llama.cpp's permuted q/k order and are put back in Hugging Face order.
func (b *ggufBinder) mat(name string, rows, cols, heads int) *compute.Mat {
	t := b.tensor(name, rows, cols)
	if t == nil {
		return nil
	}
	m, err := ggufMat(t, rows, cols, heads)
	if err != nil {
		b.err = fmt.Errorf("tensor %q: %w", name, err)
		return m
	}
	if b.release != nil && !m.Aliases(t.Data) {
		b.release(t.Data) // copied or converted: the file's bytes are not read again
	}
	return m
}

func ggufMat(t *gguf.Tensor, rows, cols, heads int) (*compute.Mat, error) {
	m := &compute.Mat{Rows: rows, Cols: cols}
	var err error
	switch t.Type {
	case gguf.BF16:
		m.DType = compute.BF16
		m.BF16 = u16s(t.Data)
		if heads > 0 {
			m.BF16, err = gguf.UnpermuteQK(m.BF16, rows, cols, heads)
		}
		return m, err
	case gguf.F32:
		m.DType = compute.F32
		m.F32 = f32s(t.Data)
	case gguf.F16:
		m.DType = compute.F32
		m.F32 = make([]float32, rows*cols)
		for i := range m.F32 {
			m.F32[i] = compute.F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case gguf.Q4_1:
		return q4Mat(t, rows, cols, heads)
	case gguf.Q8_0, gguf.Q4_0, gguf.Q5_0, gguf.Q4_K, gguf.Q6_K:
		raw := t.Data
		if heads > 0 {
			// Whole rows move, so the blocks stay intact.
			if raw, err = gguf.UnpermuteQK(raw, rows, t.Type.RowBytes(cols), heads); err != nil {
				return nil, err
			}
		}
		if t.Type == gguf.Q8_0 {
			return compute.NewQ8_0(rows, cols, raw)
		}
		dt, _ := GGUFMatDType(t.Type)
		return compute.NewBlocks(dt, rows, cols, raw)
	default:
		if !gguf.CanDequantize(t.Type) {
			return nil, fmt.Errorf("type %s is not supported (kvserve loads F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_1, Q4_K and Q6_K, and dequantizes Q5_1, Q8_1 and the other k-quants)", t.Type)
		}
		m.DType = compute.F32
		m.F32 = make([]float32, rows*cols)
		if err := gguf.Dequantize(t, m.F32); err != nil {
			return nil, err
		}
	}
	if heads > 0 {
		m.F32, err = gguf.UnpermuteQK(m.F32, rows, cols, heads)
	}
	return m, err
}

// GGUFMatDType returns the storage type LoadGGUF gives a weight matrix
// stored in GGUF as typ, and false if it cannot load typ. (1-D tensors are
// always read as F32.)
func GGUFMatDType(typ gguf.Type) (compute.DType, bool) {
	switch typ {
	case gguf.BF16:
		return compute.BF16, true
	case gguf.Q8_0:
		return compute.Q8_0, true
	case gguf.Q4_0:
		return compute.Q4_0, true
	case gguf.Q5_0:
		return compute.Q5_0, true
	case gguf.Q4_K:
		return compute.Q4_K, true
	case gguf.Q6_K:
		return compute.Q6_K, true
	case gguf.Q4_1:
		return compute.Q4, true
	}
	return compute.F32, gguf.CanDequantize(typ)
}

// q4Mat converts a Q4_1 tensor to a Q4 matrix (a copy, 24 bytes per 32
// weights, every value kept), un-permuting q/k rows when heads > 0.
func q4Mat(t *gguf.Tensor, rows, cols, heads int) (*compute.Mat, error) {
	rb := compute.Q4RowBytes(cols)
	raw := make([]byte, rows*rb)
	if err := compute.Q4FromGGML(compute.GGMLQ4_1, raw, t.Data); err != nil {
		return nil, err
	}
	if heads > 0 {
		var err error
		if raw, err = gguf.UnpermuteQK(raw, rows, rb, heads); err != nil {
			return nil, err
		}
	}
	return compute.NewQ4(rows, cols, raw)
}

// vec returns a 1-D tensor as float32 (a copy). With heads > 0 it is a
// q or k bias in llama.cpp's permuted order, put back in HF order.
func (b *ggufBinder) vec(name string, n, heads int) []float32 {
	t := b.tensor(name, n)
	if t == nil {
		return nil
	}
	out := make([]float32, n)
	err := gguf.Dequantize(t, out)
	if err == nil && heads > 0 {
		out, err = gguf.UnpermuteQK(out, n, 1, heads)
	}
	if err != nil {
		b.err = fmt.Errorf("tensor %q: %w", name, err)
	}
	return out
}

// bindGGUF fills the model's weights from the file's tensors.
func (m *Model) bindGGUF(f *gguf.File, release func([]byte)) error {
	c := m.Config
	b := &ggufBinder{f: f, used: map[string]bool{}, release: release}
	h, qd, kvd := c.HiddenSize, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	qHeads, kHeads := 0, 0
	if c.Family == Llama { // convert_hf_to_gguf.py permutes Llama's q and k
		qHeads, kHeads = c.Heads, c.KVHeads
	}
	m.Embed = b.mat("token_embd.weight", c.VocabSize, h, 0)
	m.Norm = b.vec("output_norm.weight", h, 0)
	if c.TieEmbeddings {
		m.Head = m.Embed
	} else {
		m.Head = b.mat("output.weight", c.VocabSize, h, 0)
	}
	var ropeFreqs []float32
	if t := f.Tensor("rope_freqs.weight"); t != nil {
		ropeFreqs = b.vec("rope_freqs.weight", c.HeadDim/2, 0)
	}
	m.Layers = make([]Layer, c.Layers)
	ropeIndex := map[Rope]int{}
	scaled := map[int]bool{} // tables of RopeFull, which rope_freqs scales
	for i := range m.Layers {
		if b.err != nil {
			break
		}
		p := fmt.Sprintf("blk.%d.", i)
		l := &m.Layers[i]
		l.AttnNorm = b.vec(p+"attn_norm.weight", h, 0)
		l.Q = b.mat(p+"attn_q.weight", qd, h, qHeads)
		l.K = b.mat(p+"attn_k.weight", kvd, h, kHeads)
		l.V = b.mat(p+"attn_v.weight", kvd, h, 0)
		l.O = b.mat(p+"attn_output.weight", h, qd, 0)
		if c.AttentionBias {
			l.QBias = b.vec(p+"attn_q.bias", qd, qHeads)
			l.KBias = b.vec(p+"attn_k.bias", kvd, kHeads)
			l.VBias = b.vec(p+"attn_v.bias", kvd, 0)
		}
		if c.QKNorm {
			l.QNorm = b.vec(p+"attn_q_norm.weight", c.HeadDim, 0)
			l.KNorm = b.vec(p+"attn_k_norm.weight", c.HeadDim, 0)
		}
		l.MLPNorm = b.vec(p+"ffn_norm.weight", h, 0)
		if c.SandwichNorm {
			l.PostAttnNorm = b.vec(p+"post_attention_norm.weight", h, 0)
			l.PostMLPNorm = b.vec(p+"post_ffw_norm.weight", h, 0)
		}
		l.Gate = b.mat(p+"ffn_gate.weight", c.IntermediateSize, h, 0)
		l.Up = b.mat(p+"ffn_up.weight", c.IntermediateSize, h, 0)
		l.Down = b.mat(p+"ffn_down.weight", h, c.IntermediateSize, 0)
		r := c.LayerRope(i)
		idx, ok := ropeIndex[r]
		if !ok {
			idx = len(m.ropes)
			ropeIndex[r] = idx
			m.ropes = append(m.ropes, newRopeTable(r, c.HeadDim))
		}
		l.ropeIndex = idx
		if r == c.RopeFull {
			scaled[idx] = true
		}
	}
	if b.err != nil {
		return b.err
	}
	// Llama 3 RoPE: llama.cpp divides each frequency by its factor.
	for idx := range scaled {
		for i, fac := range ropeFreqs {
			if !(fac > 0) || math.IsInf(float64(fac), 0) {
				return fmt.Errorf("tensor %q: factor %d is %g, want a positive number", "rope_freqs.weight", i, fac)
			}
			m.ropes[idx].invFreq[i] /= fac
		}
	}
	var unused []string
	for _, t := range f.Tensors {
		if !b.used[t.Name] {
			unused = append(unused, t.Name)
		}
	}
	if len(unused) > 0 {
		return fmt.Errorf("%d tensors the %s loader does not use, e.g. %q: is the architecture right?", len(unused), f.Architecture(), unused[0])
	}
	return nil
}
