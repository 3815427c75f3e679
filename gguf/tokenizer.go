package gguf

import (
	"fmt"
	"math"
)

// Tokenizer metadata keys written by llama.cpp.
const (
	KeyTokenizerModel     = "tokenizer.ggml.model"  // "gpt2" (byte-level BPE), "llama" (SentencePiece), …
	KeyTokenizerPre       = "tokenizer.ggml.pre"    // pre-tokenizer name ("llama-bpe", "qwen2", …)
	KeyTokenizerTokens    = "tokenizer.ggml.tokens" // string array, indexed by token id
	KeyTokenizerTokenType = "tokenizer.ggml.token_type"
	KeyTokenizerScores    = "tokenizer.ggml.scores"
	KeyTokenizerMerges    = "tokenizer.ggml.merges" // "a b" strings, highest priority first
	KeyTokenizerBOS       = "tokenizer.ggml.bos_token_id"
	KeyTokenizerEOS       = "tokenizer.ggml.eos_token_id"
	KeyTokenizerEOT       = "tokenizer.ggml.eot_token_id"
	KeyTokenizerUnknown   = "tokenizer.ggml.unknown_token_id"
	KeyTokenizerPadding   = "tokenizer.ggml.padding_token_id"
	KeyTokenizerAddBOS    = "tokenizer.ggml.add_bos_token"
	KeyTokenizerAddEOS    = "tokenizer.ggml.add_eos_token"
	KeyChatTemplate       = "tokenizer.chat_template"
)

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	TokenTypeUndefined   = 0
	TokenTypeNormal      = 1
	TokenTypeUnknown     = 2
	TokenTypeControl     = 3
	TokenTypeUserDefined = 4
	TokenTypeUnused      = 5
	TokenTypeByte        = 6
)

// TokenizerMetadata is the tokenizer description stored in a GGUF file,
// with typed fields and no tokenizer logic. Absent keys leave a field at
// its zero value, except token ids, which are -1 when absent.
type TokenizerMetadata struct {
	Model        string    // tokenizer.ggml.model
	Pre          string    // tokenizer.ggml.pre
	Tokens       []string  // tokenizer.ggml.tokens
	TokenTypes   []int32   // tokenizer.ggml.token_type, one per token
	Scores       []float32 // tokenizer.ggml.scores, one per token
	Merges       []string  // tokenizer.ggml.merges
	BOS          int       // tokenizer.ggml.bos_token_id
	EOS          int       // tokenizer.ggml.eos_token_id
	EOT          int       // tokenizer.ggml.eot_token_id
	Unknown      int       // tokenizer.ggml.unknown_token_id
	Padding      int       // tokenizer.ggml.padding_token_id
	AddBOS       *bool     // tokenizer.ggml.add_bos_token, nil when absent
	AddEOS       *bool     // tokenizer.ggml.add_eos_token, nil when absent
	ChatTemplate string    // tokenizer.chat_template
}

// TokenizerMetadata collects the tokenizer keys. It fails when a key is
// present with the wrong type, when token_type or scores disagree with
// tokens in length, or when a token id is outside the token list.
func (f *File) TokenizerMetadata() (*TokenizerMetadata, error) {
	tm := &TokenizerMetadata{}
	var err error
	str := func(key string, dst *string) {
		if v, ok := f.Metadata[key]; ok && err == nil {
			var ok bool
			if *dst, ok = v.AsString(); !ok {
				err = fmt.Errorf("gguf: %s is %s, want string", key, v.Type)
			}
		}
	}
	strs := func(key string, dst *[]string) {
		if v, ok := f.Metadata[key]; ok && err == nil {
			var ok bool
			if *dst, ok = v.AsStrings(); !ok {
				err = fmt.Errorf("gguf: %s is %s of %s, want array of string", key, v.Type, v.ElemType)
			}
		}
	}
	id := func(key string, dst *int) {
		*dst = -1
		if v, ok := f.Metadata[key]; ok && err == nil {
			u, ok := v.AsUint()
			if !ok || u >= math.MaxInt32 {
				err = fmt.Errorf("gguf: %s is %v, want a token id", key, v)
				return
			}
			*dst = int(u)
		}
	}
	boolean := func(key string, dst **bool) {
		if v, ok := f.Metadata[key]; ok && err == nil {
			b, ok := v.AsBool()
			if !ok {
				err = fmt.Errorf("gguf: %s is %s, want bool", key, v.Type)
				return
			}
			*dst = &b
		}
	}
	str(KeyTokenizerModel, &tm.Model)
	str(KeyTokenizerPre, &tm.Pre)
	str(KeyChatTemplate, &tm.ChatTemplate)
	strs(KeyTokenizerTokens, &tm.Tokens)
	strs(KeyTokenizerMerges, &tm.Merges)
	id(KeyTokenizerBOS, &tm.BOS)
	id(KeyTokenizerEOS, &tm.EOS)
	id(KeyTokenizerEOT, &tm.EOT)
	id(KeyTokenizerUnknown, &tm.Unknown)
	id(KeyTokenizerPadding, &tm.Padding)
	boolean(KeyTokenizerAddBOS, &tm.AddBOS)
	boolean(KeyTokenizerAddEOS, &tm.AddEOS)
	if err != nil {
		return nil, err
	}
	if v, ok := f.Metadata[KeyTokenizerTokenType]; ok {
		is, ok := v.AsInts()
		if !ok {
			return nil, fmt.Errorf("gguf: %s is %s of %s, want array of integers", KeyTokenizerTokenType, v.Type, v.ElemType)
		}
		tm.TokenTypes = make([]int32, len(is))
		for i, x := range is {
			if x < math.MinInt32 || x > math.MaxInt32 {
				return nil, fmt.Errorf("gguf: %s[%d] = %d is out of range", KeyTokenizerTokenType, i, x)
			}
			tm.TokenTypes[i] = int32(x)
		}
	}
	if v, ok := f.Metadata[KeyTokenizerScores]; ok {
		fs, ok := v.AsFloats()
		if !ok {
			return nil, fmt.Errorf("gguf: %s is %s of %s, want array of floats", KeyTokenizerScores, v.Type, v.ElemType)
		}
		tm.Scores = convertSlice(fs, func(x float64) float32 { return float32(x) })
	}
	n := len(tm.Tokens)
	if tm.TokenTypes != nil && len(tm.TokenTypes) != n {
		return nil, fmt.Errorf("gguf: %s has %d entries for %d tokens", KeyTokenizerTokenType, len(tm.TokenTypes), n)
	}
	if tm.Scores != nil && len(tm.Scores) != n {
		return nil, fmt.Errorf("gguf: %s has %d entries for %d tokens", KeyTokenizerScores, len(tm.Scores), n)
	}
	if tm.Tokens != nil {
		for _, c := range []struct {
			key string
			id  int
		}{{KeyTokenizerBOS, tm.BOS}, {KeyTokenizerEOS, tm.EOS}, {KeyTokenizerEOT, tm.EOT}, {KeyTokenizerUnknown, tm.Unknown}, {KeyTokenizerPadding, tm.Padding}} {
			if c.id >= n {
				return nil, fmt.Errorf("gguf: %s = %d is outside the %d tokens", c.key, c.id, n)
			}
		}
	}
	return tm, nil
}
