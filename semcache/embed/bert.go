package embed

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/model/safetensors"
	"github.com/kvserve/kvserve/semcache"
)

// BERT is a BERT-family sentence encoder loaded from a folder as
// sentence-transformers saves one: modules.json naming the Transformer
// (config.json, model.safetensors, a WordPiece tokenizer.json), Pooling
// (1_Pooling/config.json: CLS, mean, max or mean/√n, concatenated in that
// order when several are on) and Normalize modules. A plain BERT folder
// without modules.json is mean-pooled and normalized. The forward pass is
// BERT's: word + position + token-type embeddings and LayerNorm, then
// post-norm layers of self-attention and a GELU feed-forward block.
type BERT struct {
	dir                      string
	tok                      *WordPiece
	maxLen                   int
	hidden, heads, ffn       int
	eps                      float64
	act                      string
	wordEmb, posEmb, typeEmb []float32
	embNormW, embNormB       []float32
	layers                   []bertLayer
	poolCLS, poolMean        bool
	poolMax, poolSqrt        bool
	normalize                bool
}

type bertLayer struct {
	q, k, v, o, up, down linear
	attnNormW, attnNormB []float32
	outNormW, outNormB   []float32
}

// linear is y = W·x + b with W of out × in, as torch stores it.
type linear struct {
	w, b    []float32
	in, out int
}

type stModule struct {
	Path string `json:"path"`
	Type string `json:"type"`
}

// LoadBERT loads an encoder folder.
func LoadBERT(dir string) (*BERT, error) {
	e := &BERT{dir: dir, poolMean: true, normalize: true, maxLen: 512}
	read := func(name string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("bert:%s: %w", dir, err)
		}
		return data, nil
	}
	tdir := ""
	if data, err := os.ReadFile(filepath.Join(dir, "modules.json")); err == nil {
		var mods []stModule
		if err := json.Unmarshal(data, &mods); err != nil {
			return nil, fmt.Errorf("bert:%s: modules.json: %v", dir, err)
		}
		e.normalize = false
		for _, m := range mods {
			kind := m.Type[strings.LastIndexByte(m.Type, '.')+1:]
			switch kind {
			case "Transformer":
				tdir = m.Path
			case "Pooling":
				pdata, err := read(filepath.Join(m.Path, "config.json"))
				if err != nil {
					return nil, err
				}
				var pc map[string]any
				if err := json.Unmarshal(pdata, &pc); err != nil {
					return nil, fmt.Errorf("bert:%s: %s/config.json: %v", dir, m.Path, err)
				}
				on := func(k string) bool { v, _ := pc[k].(bool); return v }
				e.poolCLS, e.poolMean, e.poolMax, e.poolSqrt = on("pooling_mode_cls_token"), on("pooling_mode_mean_tokens"), on("pooling_mode_max_tokens"), on("pooling_mode_mean_sqrt_len_tokens")
				for _, k := range []string{"pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"} {
					if on(k) {
						return nil, fmt.Errorf("bert:%s: pooling %s is not supported (cls, mean, max, mean_sqrt_len are)", dir, k)
					}
				}
				if !e.poolCLS && !e.poolMean && !e.poolMax && !e.poolSqrt {
					return nil, fmt.Errorf("bert:%s: the Pooling module turns every mode off", dir)
				}
			case "Normalize":
				e.normalize = true
			default:
				return nil, fmt.Errorf("bert:%s: module %s is not supported (Transformer, Pooling, Normalize are)", dir, m.Type)
			}
		}
	}
	tdir = filepath.Join(dir, tdir)
	if data, err := os.ReadFile(filepath.Join(tdir, "sentence_bert_config.json")); err == nil {
		var sc struct {
			MaxSeqLength int `json:"max_seq_length"`
		}
		if json.Unmarshal(data, &sc) == nil && sc.MaxSeqLength > 0 {
			e.maxLen = sc.MaxSeqLength
		}
	}
	var cfg struct {
		ModelType  string  `json:"model_type"`
		Hidden     int     `json:"hidden_size"`
		Layers     int     `json:"num_hidden_layers"`
		Heads      int     `json:"num_attention_heads"`
		FFN        int     `json:"intermediate_size"`
		MaxPos     int     `json:"max_position_embeddings"`
		TypeVocab  int     `json:"type_vocab_size"`
		Vocab      int     `json:"vocab_size"`
		Eps        float64 `json:"layer_norm_eps"`
		Act        string  `json:"hidden_act"`
		PosEmbType string  `json:"position_embedding_type"`
	}
	data, err := os.ReadFile(filepath.Join(tdir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bert:%s: %w", dir, err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("bert:%s: config.json: %v", dir, err)
	}
	switch {
	case cfg.ModelType != "bert" && cfg.ModelType != "":
		return nil, fmt.Errorf("bert:%s: model_type %q; the native encoder runs bert", dir, cfg.ModelType)
	case cfg.PosEmbType != "" && cfg.PosEmbType != "absolute":
		return nil, fmt.Errorf("bert:%s: position_embedding_type %q is not supported (absolute is)", dir, cfg.PosEmbType)
	case cfg.Hidden <= 0 || cfg.Heads <= 0 || cfg.Hidden%cfg.Heads != 0 || cfg.Layers <= 0 || cfg.FFN <= 0 || cfg.MaxPos <= 0 || cfg.Vocab <= 0:
		return nil, fmt.Errorf("bert:%s: config.json has sizes that do not fit (hidden %d, heads %d, layers %d)", dir, cfg.Hidden, cfg.Heads, cfg.Layers)
	}
	switch cfg.Act {
	case "gelu", "gelu_new", "gelu_pytorch_tanh", "relu":
	default:
		return nil, fmt.Errorf("bert:%s: hidden_act %q is not supported", dir, cfg.Act)
	}
	e.hidden, e.heads, e.ffn, e.eps, e.act = cfg.Hidden, cfg.Heads, cfg.FFN, cfg.Eps, cfg.Act
	if e.eps == 0 {
		e.eps = 1e-12
	}
	e.maxLen = min(e.maxLen, cfg.MaxPos)
	tdata, err := os.ReadFile(filepath.Join(tdir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("bert:%s: %w", dir, err)
	}
	if e.tok, err = ParseWordPiece(tdata); err != nil {
		return nil, fmt.Errorf("bert:%s: %w", dir, err)
	}
	for _, id := range e.tok.vocab {
		if id < 0 || id >= cfg.Vocab {
			return nil, fmt.Errorf("bert:%s: token id %d outside the model's vocabulary of %d", dir, id, cfg.Vocab)
		}
	}
	wdata, err := os.ReadFile(filepath.Join(tdir, "model.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("bert:%s: %w (only safetensors weights are read)", dir, err)
	}
	f, err := safetensors.Parse(wdata)
	if err != nil {
		return nil, fmt.Errorf("bert:%s: model.safetensors: %w", dir, err)
	}
	w := &weights{f: f, dir: dir}
	h := cfg.Hidden
	e.wordEmb = w.get("embeddings.word_embeddings.weight", cfg.Vocab, h)
	e.posEmb = w.get("embeddings.position_embeddings.weight", cfg.MaxPos, h)
	e.typeEmb = w.get("embeddings.token_type_embeddings.weight", max(1, cfg.TypeVocab), h)
	e.embNormW, e.embNormB = w.norm("embeddings.LayerNorm", h)
	for i := range cfg.Layers {
		p := fmt.Sprintf("encoder.layer.%d.", i)
		l := bertLayer{
			q: w.linear(p+"attention.self.query", h, h), k: w.linear(p+"attention.self.key", h, h),
			v: w.linear(p+"attention.self.value", h, h), o: w.linear(p+"attention.output.dense", h, h),
			up: w.linear(p+"intermediate.dense", h, cfg.FFN), down: w.linear(p+"output.dense", cfg.FFN, h),
		}
		l.attnNormW, l.attnNormB = w.norm(p+"attention.output.LayerNorm", h)
		l.outNormW, l.outNormB = w.norm(p+"output.LayerNorm", h)
		e.layers = append(e.layers, l)
	}
	if w.err != nil {
		return nil, w.err
	}
	return e, nil
}

// weights reads tensors as float32, noting the first error.
type weights struct {
	f   *safetensors.File
	dir string
	err error
}

func (w *weights) get(name string, shape ...int) []float32 {
	if w.err != nil {
		return nil
	}
	t := w.f.Tensors[name]
	if t == nil {
		t = w.f.Tensors["bert."+name]
	}
	if t == nil { // old checkpoints name LayerNorm's weight and bias gamma and beta
		old := strings.NewReplacer("LayerNorm.weight", "LayerNorm.gamma", "LayerNorm.bias", "LayerNorm.beta").Replace(name)
		if t = w.f.Tensors[old]; t == nil {
			t = w.f.Tensors["bert."+old]
		}
	}
	if t == nil {
		w.err = fmt.Errorf("bert:%s: model.safetensors has no tensor %s", w.dir, name)
		return nil
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if t.Elements() != n {
		w.err = fmt.Errorf("bert:%s: tensor %s has shape %v, want %v", w.dir, name, t.Shape, shape)
		return nil
	}
	out := make([]float32, n)
	switch t.DType {
	case safetensors.F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case safetensors.BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[2*i:])) << 16)
		}
	case safetensors.F16:
		for i := range out {
			out[i] = compute.F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	default:
		w.err = fmt.Errorf("bert:%s: tensor %s has dtype %s (F32, BF16 and F16 are read)", w.dir, name, t.DType)
	}
	return out
}

func (w *weights) linear(name string, in, out int) linear {
	return linear{w: w.get(name+".weight", out, in), b: w.get(name+".bias", out), in: in, out: out}
}

func (w *weights) norm(name string, h int) ([]float32, []float32) {
	return w.get(name+".weight", h), w.get(name+".bias", h)
}

// Name returns "bert:DIR".
func (e *BERT) Name() string { return "bert:" + filepath.Base(e.dir) }

// Tokenizer returns the encoder's tokenizer.
func (e *BERT) Tokenizer() *WordPiece { return e.tok }

// Embed encodes each text (truncated to the model's max_seq_length tokens).
func (e *BERT) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = e.EncodeIDs(e.tok.Encode(t, e.maxLen))
	}
	return out, nil
}

// EncodeIDs runs token ids (with [CLS] and [SEP]) through the encoder and
// pools them.
func (e *BERT) EncodeIDs(ids []int) []float32 {
	n, h := len(ids), e.hidden
	x := make([]float32, n*h)
	for t, id := range ids {
		row := x[t*h : (t+1)*h]
		for j := range row {
			row[j] = e.wordEmb[id*h+j] + e.posEmb[t*h+j] + e.typeEmb[j]
		}
		layerNorm(row, e.embNormW, e.embNormB, e.eps)
	}
	hd := h / e.heads
	scale := 1 / math.Sqrt(float64(hd))
	q, k, v := make([]float32, n*h), make([]float32, n*h), make([]float32, n*h)
	ctxv, tmp := make([]float32, n*h), make([]float32, n*h)
	mid := make([]float32, n*e.ffn)
	scores := make([]float64, n)
	for _, l := range e.layers {
		l.q.apply(q, x, n)
		l.k.apply(k, x, n)
		l.v.apply(v, x, n)
		for hh := range e.heads {
			off := hh * hd
			for i := range n {
				qi := q[i*h+off : i*h+off+hd]
				mx := math.Inf(-1)
				for j := range n {
					var s float64
					kj := k[j*h+off : j*h+off+hd]
					for d := range hd {
						s += float64(qi[d]) * float64(kj[d])
					}
					scores[j] = s * scale
					mx = math.Max(mx, scores[j])
				}
				var sum float64
				for j := range n {
					scores[j] = math.Exp(scores[j] - mx)
					sum += scores[j]
				}
				dst := ctxv[i*h+off : i*h+off+hd]
				for d := range dst {
					var acc float64
					for j := range n {
						acc += scores[j] * float64(v[j*h+off+d])
					}
					dst[d] = float32(acc / sum)
				}
			}
		}
		l.o.apply(tmp, ctxv, n)
		for t := range n {
			row := x[t*h : (t+1)*h]
			for j := range row {
				row[j] += tmp[t*h+j]
			}
			layerNorm(row, l.attnNormW, l.attnNormB, e.eps)
		}
		l.up.apply(mid, x, n)
		for i, z := range mid {
			mid[i] = activate(e.act, z)
		}
		l.down.apply(tmp, mid, n)
		for t := range n {
			row := x[t*h : (t+1)*h]
			for j := range row {
				row[j] += tmp[t*h+j]
			}
			layerNorm(row, l.outNormW, l.outNormB, e.eps)
		}
	}
	var pooled []float32
	if e.poolCLS {
		pooled = append(pooled, x[:h]...)
	}
	if e.poolMax {
		m := make([]float32, h)
		copy(m, x[:h])
		for t := 1; t < n; t++ {
			for j := range m {
				m[j] = max(m[j], x[t*h+j])
			}
		}
		pooled = append(pooled, m...)
	}
	if e.poolMean || e.poolSqrt {
		sum := make([]float64, h)
		for t := range n {
			for j := range sum {
				sum[j] += float64(x[t*h+j])
			}
		}
		if e.poolMean {
			for _, s := range sum {
				pooled = append(pooled, float32(s/float64(n)))
			}
		}
		if e.poolSqrt {
			for _, s := range sum {
				pooled = append(pooled, float32(s/math.Sqrt(float64(n))))
			}
		}
	}
	if e.normalize {
		semcache.Normalize(pooled)
	}
	return pooled
}

// apply computes dst (n × out) = src (n × in) · Wᵀ + b.
func (l linear) apply(dst, src []float32, n int) {
	for t := range n {
		x := src[t*l.in : (t+1)*l.in]
		for o := range l.out {
			w := l.w[o*l.in : (o+1)*l.in]
			var s float64
			for i, xv := range x {
				s += float64(w[i]) * float64(xv)
			}
			dst[t*l.out+o] = float32(s) + l.b[o]
		}
	}
}

func layerNorm(x, w, b []float32, eps float64) {
	var mean, vr float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	for _, v := range x {
		d := float64(v) - mean
		vr += d * d
	}
	inv := 1 / math.Sqrt(vr/float64(len(x))+eps)
	for i, v := range x {
		x[i] = float32((float64(v)-mean)*inv)*w[i] + b[i]
	}
}

func activate(act string, x float32) float32 {
	v := float64(x)
	switch act {
	case "relu":
		return float32(math.Max(0, v))
	case "gelu_new", "gelu_pytorch_tanh":
		return float32(0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))))
	}
	return float32(0.5 * v * (1 + math.Erf(v/math.Sqrt2)))
}

// Tokens returns how many tokens the encoder reads of text ([CLS] and
// [SEP] included, truncated as Embed truncates).
func (e *BERT) Tokens(text string) int { return len(e.tok.Encode(text, e.maxLen)) }

// MaxLen returns the most tokens the encoder reads of one text.
func (e *BERT) MaxLen() int { return e.maxLen }
