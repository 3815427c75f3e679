package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/text/unicode/norm"

	"github.com/kvserve/kvserve/gguf"
)

// ggufPre maps llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) to the
// split pattern they stand for, whether HF's tokenizer.json of those
// models normalizes to NFC (Qwen2's does) and whether it sets
// ignore_merges (Llama 3's does).
var ggufPre = map[string]struct {
	pattern      string
	nfc          bool
	ignoreMerges bool
}{
	"llama-bpe": {patternLlama3, false, true},
	"llama3":    {patternLlama3, false, true},
	"llama-v3":  {patternLlama3, false, true},
	"smaug-bpe": {patternLlama3, false, true},
	"qwen2":     {patternQwen2, true, false},
	"gpt2":      {patternGPT2, false, false},
	"gpt-2":     {patternGPT2, false, false},
	"default":   {patternGPT2, false, false},
}

// FromGGUF builds a tokenizer from the tokenizer metadata of a GGUF file.
// It supports byte-level BPE (tokenizer.ggml.model "gpt2") with the
// pre-tokenizers llama-bpe (Llama 3's regex, also named llama3, llama-v3
// and smaug-bpe; with Llama 3's ignore_merges), qwen2 (Qwen2's regex, with
// Qwen2's NFC normalizer) and gpt2, gpt-2 or default (GPT-2's regex). Token ids are positions in
// tokenizer.ggml.tokens. Tokens of type control (3) become special added
// tokens and user-defined ones (4) non-special added tokens; both are
// recognised in the text as written, as in Encode. BOS is set when
// tokenizer.ggml.add_bos_token is true, EOS from eos_token_id.
func FromGGUF(md *gguf.TokenizerMetadata) (*Tokenizer, error) {
	if md == nil {
		return nil, errors.New("tokenizer: no GGUF tokenizer metadata")
	}
	if md.Model != "gpt2" {
		what := md.Model
		if what == "llama" {
			what = "llama (SentencePiece)"
		}
		return nil, fmt.Errorf("tokenizer: GGUF %s is %q; kvserve reads only byte-level BPE (\"gpt2\")", gguf.KeyTokenizerModel, what)
	}
	pre, ok := ggufPre[md.Pre]
	if !ok {
		names := make([]string, 0, len(ggufPre))
		for n := range ggufPre {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("tokenizer: GGUF %s %q is not supported (kvserve knows %s)", gguf.KeyTokenizerPre, md.Pre, strings.Join(names, ", "))
	}
	n := len(md.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: GGUF has no %s", gguf.KeyTokenizerTokens)
	}
	if n > maxID {
		return nil, fmt.Errorf("tokenizer: GGUF has %d tokens, more than %d", n, maxID)
	}
	if md.TokenTypes != nil && len(md.TokenTypes) != n {
		return nil, fmt.Errorf("tokenizer: GGUF %s has %d entries for %d tokens", gguf.KeyTokenizerTokenType, len(md.TokenTypes), n)
	}

	// The vocabulary: a string listed twice keeps its first id.
	vocab := make(map[string]int, n)
	for id, tok := range md.Tokens {
		if _, dup := vocab[tok]; !dup {
			vocab[tok] = id
		}
	}
	merges := make([][2]string, len(md.Merges))
	for k, s := range md.Merges {
		a, b, ok := cutSpace(s)
		if !ok {
			return nil, fmt.Errorf("tokenizer: GGUF %s[%d] %q is not two tokens separated by a space", gguf.KeyTokenizerMerges, k, s)
		}
		merges[k] = [2]string{a, b}
	}
	model, err := newBPE(vocab, merges, "")
	if err != nil {
		return nil, fmt.Errorf("tokenizer: GGUF %s: %w", gguf.KeyTokenizerMerges, err)
	}
	// The pre-tokenizer splits raw text; the model maps each piece's bytes
	// to the byte-level alphabet (as Parse arranges for a final ByteLevel
	// stage without its own regex).
	model.setRawBytes()
	// Llama 3 looks whole words up in the vocabulary before merging
	// (ignore_merges in its tokenizer.json; llama.cpp does the same for
	// these pre-tokenizers).
	model.ignoreMerges = pre.ignoreMerges
	m, err := compilePattern(patternJSON{Regex: &pre.pattern})
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{model: model, bos: -1, eos: -1, addedIDs: map[string]int{}}
	t.pre = pipeline{&splitStage{m: m, behavior: isolated}}
	if pre.nfc {
		t.norm = normalizer{norm.NFC}
	}

	var added []addedTokenJSON
	no := false
	for id, typ := range md.TokenTypes {
		if typ != gguf.TokenTypeControl && typ != gguf.TokenTypeUserDefined {
			continue
		}
		tok := md.Tokens[id]
		if vocab[tok] != id {
			continue // a duplicate string: the first id stands for it
		}
		added = append(added, addedTokenJSON{Content: tok, Normalized: &no, Special: typ == gguf.TokenTypeControl})
	}
	if err := t.buildVocab(vocab, added); err != nil {
		return nil, fmt.Errorf("tokenizer: GGUF: %w", err)
	}
	// Ids whose string repeats an earlier token's are not in vocab; give
	// them their token anyway, so that they decode.
	for len(t.tokens) < n {
		t.tokens = append(t.tokens, "")
		t.has = append(t.has, false)
		t.special = append(t.special, false)
		t.bytes = append(t.bytes, nil)
	}
	for id, tok := range md.Tokens {
		if !t.has[id] {
			t.tokens[id], t.has[id] = tok, true
			t.bytes[id] = byteLevelDecode(tok)
		}
	}
	if md.AddBOS != nil && *md.AddBOS && md.BOS >= 0 && md.BOS < n {
		t.bos = md.BOS
	}
	if md.EOS >= 0 && md.EOS < n {
		t.eos = md.EOS
	}
	return t, nil
}
