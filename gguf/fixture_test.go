package gguf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvserve/kvserve/model/safetensors"
)

// The fixtures are tinychat (models/tinychat, bf16 safetensors) converted by
// llama.cpp's convert_hf_to_gguf.py, build 4748, to BF16 and to Q8_0.
const (
	fixtureDir  = "../../shared/models/gguf"
	tinychatDir = "../models/tinychat"
)

func readFixture(t *testing.T, name string) *File {
	t.Helper()
	path := filepath.Join(fixtureDir, name)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("fixture %s is absent (no shared/ beside the repo)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

var (
	hfOnce    sync.Once
	hfTensors map[string]*safetensors.Tensor
	hfErr     error
)

// hfWeights loads every tensor of the sharded safetensors model.
func hfWeights(t *testing.T) map[string]*safetensors.Tensor {
	t.Helper()
	hfOnce.Do(func() {
		var index struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		raw, err := os.ReadFile(filepath.Join(tinychatDir, "model.safetensors.index.json"))
		if err != nil {
			hfErr = err
			return
		}
		if hfErr = json.Unmarshal(raw, &index); hfErr != nil {
			return
		}
		hfTensors = map[string]*safetensors.Tensor{}
		shards := map[string]bool{}
		for _, shard := range index.WeightMap {
			shards[shard] = true
		}
		for shard := range shards {
			data, err := os.ReadFile(filepath.Join(tinychatDir, shard))
			if err != nil {
				hfErr = err
				return
			}
			f, err := safetensors.Parse(data)
			if err != nil {
				hfErr = fmt.Errorf("%s: %w", shard, err)
				return
			}
			for name, tt := range f.Tensors {
				if index.WeightMap[name] == shard {
					hfTensors[name] = tt
				}
			}
		}
	})
	if hfErr != nil {
		t.Fatal(hfErr)
	}
	return hfTensors
}

// bf16Floats widens a safetensors BF16 tensor to float32.
func bf16Floats(t *testing.T, st *safetensors.Tensor) []float32 {
	t.Helper()
	if st.DType != safetensors.BF16 {
		t.Fatalf("%s is %s, want BF16", st.Name, st.DType)
	}
	out := make([]float32, st.Elements())
	for i := range out {
		out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(st.Data[2*i:]))
	}
	return out
}

// ggufToHF maps llama.cpp's llama tensor names to Hugging Face Llama names.
var ggufToHF = map[string]string{
	"token_embd.weight":  "model.embed_tokens.weight",
	"output_norm.weight": "model.norm.weight",
	"output.weight":      "lm_head.weight", // absent here: embeddings are tied
	"attn_norm.weight":   "input_layernorm.weight",
	"ffn_norm.weight":    "post_attention_layernorm.weight",
	"attn_q.weight":      "self_attn.q_proj.weight",
	"attn_k.weight":      "self_attn.k_proj.weight",
	"attn_v.weight":      "self_attn.v_proj.weight",
	"attn_output.weight": "self_attn.o_proj.weight",
	"ffn_gate.weight":    "mlp.gate_proj.weight",
	"ffn_up.weight":      "mlp.up_proj.weight",
	"ffn_down.weight":    "mlp.down_proj.weight",
}

func hfName(name string) string {
	var layer int
	var rest string
	if n, _ := fmt.Sscanf(strings.Replace(name, ".", " ", 2), "blk %d %s", &layer, &rest); n == 2 {
		return fmt.Sprintf("model.layers.%d.%s", layer, ggufToHF[rest])
	}
	return ggufToHF[name]
}

func TestFixtureMetadata(t *testing.T) {
	for _, tc := range []struct {
		file     string
		fileType uint64 // llama_ftype: 32 = MOSTLY_BF16, 7 = MOSTLY_Q8_0
		matrix   Type
	}{
		{"tinychat-bf16.gguf", 32, BF16},
		{"tinychat-q8_0.gguf", 7, Q8_0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f := readFixture(t, tc.file)
			if f.Version != 3 || f.Alignment != 32 || f.Architecture() != "llama" {
				t.Fatalf("version %d alignment %d architecture %q", f.Version, f.Alignment, f.Architecture())
			}
			for _, c := range []struct {
				key  string
				want uint64
			}{
				{"llama.block_count", 8},
				{"llama.context_length", 4096},
				{"llama.embedding_length", 384},
				{"llama.feed_forward_length", 1024},
				{"llama.attention.head_count", 6},
				{"llama.attention.head_count_kv", 2},
				{"llama.attention.key_length", 64},
				{"llama.attention.value_length", 64},
				{"llama.rope.dimension_count", 64},
				{"llama.vocab_size", 4096},
				{"general.file_type", tc.fileType},
				{"general.quantization_version", 2},
			} {
				if got, ok := f.Uint(c.key); !ok || got != c.want {
					t.Errorf("%s = %d (%v), want %d", c.key, got, ok, c.want)
				}
			}
			if eps, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || float32(eps) != float32(1e-5) {
				t.Errorf("rms epsilon = %v (%v)", eps, ok)
			}
			// This converter build writes llama.rope.freq_base only when
			// config.json has a top-level rope_theta; tinychat's config (from
			// transformers 5) keeps it under rope_parameters, so the key is
			// absent and llama.cpp uses its default, 10000 — which is
			// tinychat's θ. A loader must apply the same default.
			if base, ok := f.Float(f.ArchKey("rope.freq_base")); ok && base != 10000 {
				t.Errorf("rope.freq_base = %v, want 10000", base)
			} else if !ok {
				t.Logf("%s absent: default 10000", f.ArchKey("rope.freq_base"))
			}

			tm, err := f.TokenizerMetadata()
			if err != nil {
				t.Fatal(err)
			}
			if tm.Model != "gpt2" || tm.Pre != "llama-bpe" || len(tm.Tokens) != 4096 || len(tm.TokenTypes) != 4096 || len(tm.Merges) != 3837 {
				t.Fatalf("tokenizer %q/%q, %d tokens, %d types, %d merges", tm.Model, tm.Pre, len(tm.Tokens), len(tm.TokenTypes), len(tm.Merges))
			}
			for id, tok := range []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"} {
				if tm.Tokens[id] != tok || tm.TokenTypes[id] != TokenTypeControl {
					t.Errorf("token %d = %q type %d, want %q control", id, tm.Tokens[id], tm.TokenTypes[id], tok)
				}
			}
			if tm.EOS != 2 || tm.Padding != 0 || tm.BOS != -1 || tm.Unknown != -1 || tm.AddBOS != nil || tm.Scores != nil {
				t.Errorf("ids: eos %d pad %d bos %d unk %d, add_bos %v, scores %d", tm.EOS, tm.Padding, tm.BOS, tm.Unknown, tm.AddBOS, len(tm.Scores))
			}
			// The converter reads the chat template from
			// tokenizer_config.json; tinychat keeps it in
			// chat_template.jinja, so this build wrote none.
			if tm.ChatTemplate != "" && !strings.Contains(tm.ChatTemplate, "<|im_start|>") {
				t.Errorf("chat template %q", tm.ChatTemplate)
			} else if tm.ChatTemplate == "" {
				t.Logf("%s absent", KeyChatTemplate)
			}
			checkTokenizerJSON(t, tm)

			// 1 embedding + 8 layers × 9 + the final norm; no output.weight
			// (tied embeddings).
			if len(f.Tensors) != 74 || f.Tensor("output.weight") != nil {
				t.Fatalf("%d tensors", len(f.Tensors))
			}
			for _, tt := range f.Tensors {
				want := tc.matrix
				if len(tt.Dims) == 1 {
					want = F32 // norms stay F32
				}
				if tt.Type != want || len(tt.Dims) > 2 {
					t.Errorf("%s: %s %v, want %s", tt.Name, tt.Type, tt.Dims, want)
				}
				if hfName(tt.Name) == "" {
					t.Errorf("%s: no Hugging Face name", tt.Name)
				}
			}
			if emb := f.Tensor("token_embd.weight"); emb == nil || fmt.Sprint(emb.Dims) != "[384 4096]" {
				t.Errorf("token_embd.weight: %v", emb)
			}
		})
	}
}

// checkTokenizerJSON compares the token list and merges with tokenizer.json.
func checkTokenizerJSON(t *testing.T, tm *TokenizerMetadata) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(tinychatDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tj struct {
		Model struct {
			Vocab  map[string]int    `json:"vocab"`
			Merges []json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &tj); err != nil {
		t.Fatal(err)
	}
	for id, tok := range tm.Tokens {
		if want, ok := tj.Model.Vocab[tok]; !ok || want != id {
			t.Fatalf("token %d %q: tokenizer.json id %d (%v)", id, tok, want, ok)
		}
	}
	if len(tj.Model.Merges) != len(tm.Merges) {
		t.Fatalf("%d merges, tokenizer.json %d", len(tm.Merges), len(tj.Model.Merges))
	}
	for i, m := range tj.Model.Merges {
		var pair []string
		var s string
		if json.Unmarshal(m, &pair) == nil && len(pair) == 2 {
			s = pair[0] + " " + pair[1]
		} else if err := json.Unmarshal(m, &s); err != nil {
			t.Fatalf("merge %d: %s", i, m)
		}
		if tm.Merges[i] != s {
			t.Fatalf("merge %d = %q, tokenizer.json %q", i, tm.Merges[i], s)
		}
	}
}

// hfRowOrder returns the GGUF tensor's values in Hugging Face order:
// dequantized, with the q/k rows unpermuted.
func hfRowOrder(t *testing.T, f *File, tt *Tensor) []float32 {
	t.Helper()
	x := make([]float32, tt.Elements())
	if err := Dequantize(tt, x); err != nil {
		t.Fatal(err)
	}
	heads := 0
	switch {
	case strings.HasSuffix(tt.Name, ".attn_q.weight"):
		heads = int(must(f.Uint("llama.attention.head_count")))
	case strings.HasSuffix(tt.Name, ".attn_k.weight"):
		heads = int(must(f.Uint("llama.attention.head_count_kv")))
	}
	if heads > 0 {
		var err error
		if x, err = UnpermuteQK(x, int(tt.Dims[1]), int(tt.Dims[0]), heads); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

func must[T any](v T, ok bool) T {
	if !ok {
		panic("missing metadata")
	}
	return v
}

// TestFixtureBF16MatchesSafetensors checks every tensor of the BF16 GGUF
// against the safetensors original, bit for bit: BF16 matrices are the same
// bits, F32 norms the exact widening of the bf16 values, and attn_q/attn_k
// match once UnpermuteQK undoes the converter's row permutation.
func TestFixtureBF16MatchesSafetensors(t *testing.T) {
	f := readFixture(t, "tinychat-bf16.gguf")
	hf := hfWeights(t)
	seen := 0
	for _, tt := range f.Tensors {
		st := hf[hfName(tt.Name)]
		if st == nil {
			t.Fatalf("%s: no safetensors tensor %q", tt.Name, hfName(tt.Name))
		}
		if fmt.Sprint(tt.Shape()) != fmt.Sprint(st.Shape) {
			t.Fatalf("%s: shape %v, safetensors %v", tt.Name, tt.Shape(), st.Shape)
		}
		want := bf16Floats(t, st)
		got := hfRowOrder(t, f, tt)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s[%d] = %v, safetensors %v", tt.Name, i, got[i], want[i])
			}
		}
		seen++
	}
	if seen != len(hf) {
		t.Errorf("compared %d tensors, safetensors has %d", seen, len(hf))
	}

	// Without the unpermutation attn_q differs: the permutation is real.
	q := f.Tensor("blk.0.attn_q.weight")
	raw := make([]float32, q.Elements())
	_ = Dequantize(q, raw)
	want := bf16Floats(t, hf["model.layers.0.self_attn.q_proj.weight"])
	same := true
	for i := range raw {
		same = same && raw[i] == want[i]
	}
	if same {
		t.Error("blk.0.attn_q.weight equals q_proj without unpermuting")
	}
}

// TestFixtureQ8_0 checks the Q8_0 GGUF against the safetensors original.
//
// The converter quantizes each block of 32 float32 values x (the bf16
// weights widened) as d = max|x|/127, q = round(x/d) (half away from zero,
// computed as x·(1/d) in float32), and stores d as fp16, d16. Dequantized,
// y = d16·q, so
//
//	|x − y| ≤ |x − d·q| + |q|·|d − d16| ≤ d/2 + 127·|d − d16|,
//
// where |d − d16| ≤ d·2⁻¹¹ for a normal fp16 (half an ulp of an 11-bit
// significand): the bound is about 0.56·d, a bit over the d/2 of the
// unrounded scale. The test checks that bound for every element, and also
// that the file's blocks are exactly what that quantizer produces.
func TestFixtureQ8_0(t *testing.T) {
	f := readFixture(t, "tinychat-q8_0.gguf")
	hf := hfWeights(t)
	for _, tt := range f.Tensors {
		want := bf16Floats(t, hf[hfName(tt.Name)])
		got := hfRowOrder(t, f, tt)
		if tt.Type != Q8_0 {
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s[%d] = %v, want %v", tt.Name, i, got[i], want[i])
				}
			}
			continue
		}
		// The raw blocks in Hugging Face row order (whole rows move).
		rowBytes := tt.Type.RowBytes(int(tt.Dims[0]))
		blocks := tt.Data
		if strings.Contains(tt.Name, ".attn_q.") || strings.Contains(tt.Name, ".attn_k.") {
			key := "llama.attention.head_count"
			if strings.Contains(tt.Name, ".attn_k.") {
				key += "_kv"
			}
			var err error
			if blocks, err = UnpermuteQK(tt.Data, int(tt.Dims[1]), rowBytes, int(must(f.Uint(key)))); err != nil {
				t.Fatal(err)
			}
		}
		worst := 0.0
		for b := 0; b < len(want)/32; b++ {
			x := want[32*b : 32*b+32]
			blk := blocks[34*b : 34*b+34]
			amax := float32(0)
			for _, v := range x {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			d := amax / 127
			var id float32
			if d != 0 {
				id = 1 / d
			}
			d16 := FP16ToFloat32(binary.LittleEndian.Uint16(blk))
			if h := toHalf(d); binary.LittleEndian.Uint16(blk) != h {
				t.Fatalf("%s block %d: scale %#04x, the quantizer gives %#04x", tt.Name, b, binary.LittleEndian.Uint16(blk), h)
			}
			bound := float64(d)/2 + 127*math.Abs(float64(d)-float64(d16))
			for i, v := range x {
				if q := roundHalfAway(float64(v * id)); int8(blk[2+i]) != int8(q) {
					t.Fatalf("%s block %d element %d: q %d, the quantizer gives %d", tt.Name, b, i, int8(blk[2+i]), q)
				}
				e := math.Abs(float64(got[32*b+i]) - float64(v))
				if e > bound*(1+1e-6) {
					t.Fatalf("%s block %d element %d: |%v − %v| = %g > %g", tt.Name, b, i, got[32*b+i], v, e, bound)
				}
				if d > 0 {
					worst = max(worst, e/float64(d))
				}
			}
		}
		if tt.Name == "token_embd.weight" {
			t.Logf("%s: worst error %.4f·d", tt.Name, worst)
		}
	}
}
