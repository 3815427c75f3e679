package tokenizer

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/gguf"
)

const ggufBF16 = "../../shared/models/gguf/tinychat-bf16.gguf"

// ggufMetadata reads the tokenizer metadata of a GGUF fixture, skipping
// the test when the file is absent.
func ggufMetadata(t *testing.T, path string) *gguf.TokenizerMetadata {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("GGUF fixture absent: %v", err)
	}
	f, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	md, err := f.TokenizerMetadata()
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// sameTokenizer checks that two tokenizers have the same tokens, merges,
// added tokens and BOS/EOS.
func sameTokenizer(t *testing.T, got, want *Tokenizer) {
	t.Helper()
	if !slices.Equal(got.tokens, want.tokens) || !slices.Equal(got.has, want.has) {
		t.Errorf("tokens differ: %d and %d", len(got.tokens), len(want.tokens))
	}
	if !slices.Equal(got.special, want.special) {
		t.Errorf("special flags differ")
	}
	for id := range want.bytes {
		if string(got.bytes[id]) != string(want.bytes[id]) {
			t.Fatalf("token %d decodes to %q, want %q", id, got.bytes[id], want.bytes[id])
		}
	}
	if !maps.Equal(got.model.merges, want.model.merges) {
		t.Errorf("merges differ: %d and %d", len(got.model.merges), len(want.model.merges))
	}
	if !maps.Equal(got.addedIDs, want.addedIDs) {
		t.Errorf("added tokens %v, want %v", got.addedIDs, want.addedIDs)
	}
	for id, tok := range want.model.vocab {
		if got.model.vocab[id] != tok {
			t.Fatalf("vocab[%q] = %d, want %d", id, got.model.vocab[id], tok)
		}
	}
	if got.bos != want.bos || got.eos != want.eos {
		t.Errorf("bos %d eos %d, want %d %d", got.bos, got.eos, want.bos, want.eos)
	}
}

// TestFromGGUFTinychat builds the tokenizer of llama.cpp's tinychat GGUF
// and checks it against tokenizer.json: the whole vocabulary, merges and
// special tokens, the golden prompts' ids, and the encoding of this
// package's own source.
func TestFromGGUFTinychat(t *testing.T) {
	md := ggufMetadata(t, ggufBF16)
	if md.Pre != "llama-bpe" || md.Model != "gpt2" {
		t.Fatalf("fixture has model %q pre %q", md.Model, md.Pre)
	}
	tok, err := FromGGUF(md)
	if err != nil {
		t.Fatal(err)
	}
	ref := loadTinychat(t)
	sameTokenizer(t, tok, ref)
	// llama-bpe sets ignore_merges (Llama 3's tokenizer.json does) and
	// tinychat's does not; that is the same here because every token of
	// tinychat merges back to itself.
	if !tok.model.ignoreMerges || ref.model.ignoreMerges {
		t.Errorf("ignore_merges %v, tokenizer.json's %v", tok.model.ignoreMerges, ref.model.ignoreMerges)
	}
	for id, s := range ref.tokens {
		if w := string(ref.bytes[id]); !ref.special[id] && !slices.Equal(ref.model.tokenizeWord(w), []int{id}) {
			t.Errorf("token %d %q does not merge back to itself", id, s)
		}
	}

	data, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name     string `json:"name"`
		Text     string `json:"text"`
		InputIDs []int  `json:"input_ids"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if got := tok.Encode(c.Text); !slices.Equal(got, c.InputIDs) {
			t.Errorf("%s: Encode = %v…, want %v…", c.Name, got[:min(len(got), 12)], c.InputIDs[:min(12, len(c.InputIDs))])
		}
		if got := tok.Decode(c.InputIDs); got != c.Text {
			t.Errorf("%s: Decode differs", c.Name)
		}
	}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tok.Encode(string(src)), ref.Encode(string(src)); !slices.Equal(got, want) {
			t.Errorf("%s: encodings differ", f)
		}
	}
}

// metadataFromJSON turns a tokenizer.json into GGUF tokenizer metadata as
// llama.cpp's converter does: tokens by id, added tokens typed control
// (special) or user-defined, merges as "a b".
func metadataFromJSON(t *testing.T, path, pre string) (*gguf.TokenizerMetadata, *Tokenizer) {
	t.Helper()
	ref, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Model struct {
			Merges json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	merges, err := parseMerges(f.Model.Merges)
	if err != nil {
		t.Fatal(err)
	}
	md := &gguf.TokenizerMetadata{Model: "gpt2", Pre: pre, BOS: -1, EOS: -1, EOT: -1, Unknown: -1, Padding: -1}
	for id, s := range ref.tokens {
		md.Tokens = append(md.Tokens, s)
		typ := int32(gguf.TokenTypeNormal)
		if _, added := ref.addedIDs[s]; added {
			typ = gguf.TokenTypeUserDefined
			if ref.special[id] {
				typ = gguf.TokenTypeControl
			}
		}
		md.TokenTypes = append(md.TokenTypes, typ)
	}
	for _, m := range merges {
		md.Merges = append(md.Merges, m[0]+" "+m[1])
	}
	return md, ref
}

// TestFromGGUFTestdata runs the HF cases of testdata/gpt2-tiny (GPT-2's
// regex) and qwen2-tiny (Qwen2's regex and NFC) through tokenizers built
// from GGUF-style metadata. Of qwen2-tiny's cases it skips those that need
// what GGUF cannot say: added tokens with lstrip, rstrip, single_word or
// normalized, and ignore_merges.
func TestFromGGUFTestdata(t *testing.T) {
	for _, c := range []struct{ dir, pre string }{{"gpt2-tiny", "gpt-2"}, {"qwen2-tiny", "qwen2"}} {
		t.Run(c.dir, func(t *testing.T) {
			md, ref := metadataFromJSON(t, filepath.Join("testdata", c.dir, TokenizerFile), c.pre)
			tok, err := FromGGUF(md)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tok.tokens, ref.tokens) || !maps.Equal(tok.model.merges, ref.model.merges) {
				t.Errorf("vocabulary or merges differ")
			}
			data, err := os.ReadFile(filepath.Join("testdata", c.dir, "cases.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cases []struct {
				Text string `json:"text"`
				IDs  []int  `json:"ids"`
			}
			if err := json.Unmarshal(data, &cases); err != nil {
				t.Fatal(err)
			}
			ran := 0
			for _, k := range cases {
				if c.dir == "qwen2-tiny" && slices.ContainsFunc([]string{"<tag>", "word", "caf", "unmergeable"}, func(s string) bool { return strings.Contains(k.Text, s) }) {
					continue
				}
				ran++
				if got := tok.Encode(k.Text); !slices.Equal(got, k.IDs) && len(got)+len(k.IDs) > 0 {
					t.Errorf("Encode(%q) = %v, want %v", k.Text, got, k.IDs)
				}
			}
			if ran < 8 {
				t.Errorf("only %d cases ran", ran)
			}
			if c.pre == "qwen2" && !slices.Equal(tok.Encode("e\u0301 xe\u0301"), tok.Encode("é xé")) {
				t.Errorf("qwen2: no NFC")
			}
		})
	}
}

func TestFromGGUFErrors(t *testing.T) {
	base := func() *gguf.TokenizerMetadata {
		return &gguf.TokenizerMetadata{Model: "gpt2", Pre: "llama-bpe", Tokens: []string{"a", "b", "ab"}, Merges: []string{"a b"}, BOS: -1, EOS: -1}
	}
	cases := []struct {
		name string
		edit func(*gguf.TokenizerMetadata)
		want string
	}{
		{"sentencepiece", func(m *gguf.TokenizerMetadata) { m.Model = "llama" }, "llama (SentencePiece)"},
		{"unknown pre", func(m *gguf.TokenizerMetadata) { m.Pre = "deepseek-coder" }, `"deepseek-coder" is not supported`},
		{"no tokens", func(m *gguf.TokenizerMetadata) { m.Tokens = nil }, "no tokenizer.ggml.tokens"},
		{"bad merge", func(m *gguf.TokenizerMetadata) { m.Merges = []string{"ab"} }, `"ab" is not two tokens`},
		{"merge of unknown", func(m *gguf.TokenizerMetadata) { m.Merges = []string{"a c"} }, `"c" is not in the vocabulary`},
		{"types length", func(m *gguf.TokenizerMetadata) { m.TokenTypes = []int32{1} }, "1 entries for 3 tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			md := base()
			c.edit(md)
			if _, err := FromGGUF(md); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	if _, err := FromGGUF(nil); err == nil {
		t.Error("nil metadata: no error")
	}
	// A minimal valid one, with a repeated token and BOS.
	md := base()
	md.Tokens = append(md.Tokens, "a", "<s>")
	md.TokenTypes = []int32{1, 1, 1, 1, gguf.TokenTypeControl}
	yes := true
	md.AddBOS, md.BOS, md.EOS = &yes, 4, 4
	tok, err := FromGGUF(md)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("ab<s>a"); !slices.Equal(got, []int{2, 4, 0}) {
		t.Errorf("Encode = %v", got)
	}
	if tok.Decode([]int{3}) != "a" || tok.VocabSize() != 5 {
		t.Errorf("repeated token: %q, vocab %d", tok.Decode([]int{3}), tok.VocabSize())
	}
	if b, ok := tok.BOS(); !ok || b != 4 || !tok.IsSpecial(4) {
		t.Errorf("BOS %d %v", b, ok)
	}
}
