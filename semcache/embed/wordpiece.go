package embed

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// WordPiece is a BERT tokenizer read from a Hugging Face tokenizer.json
// whose model is WordPiece: the BertNormalizer (clean text, space around
// CJK ideographs, strip accents, lower case), the BertPreTokenizer (split
// at white space and around punctuation), greedy longest-match WordPiece
// with the continuing-subword prefix, and [CLS] … [SEP] around the text.
type WordPiece struct {
	vocab                      map[string]int
	unk, cls, sep              int
	prefix                     string
	maxChars                   int
	clean, chinese, strip, low bool
}

// ParseWordPiece reads a tokenizer.json.
func ParseWordPiece(data []byte) (*WordPiece, error) {
	var tj struct {
		Normalizer *struct {
			Type         string `json:"type"`
			CleanText    *bool  `json:"clean_text"`
			HandleCJK    *bool  `json:"handle_chinese_chars"`
			StripAccents *bool  `json:"strip_accents"`
			Lowercase    *bool  `json:"lowercase"`
		} `json:"normalizer"`
		PreTokenizer *struct {
			Type string `json:"type"`
		} `json:"pre_tokenizer"`
		Model struct {
			Type     string         `json:"type"`
			Vocab    map[string]int `json:"vocab"`
			Unk      string         `json:"unk_token"`
			Prefix   *string        `json:"continuing_subword_prefix"`
			MaxChars int            `json:"max_input_chars_per_word"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %v", err)
	}
	if tj.Model.Type != "WordPiece" {
		return nil, fmt.Errorf("tokenizer.json: model type %q; the BERT encoder reads WordPiece", tj.Model.Type)
	}
	if tj.PreTokenizer != nil && tj.PreTokenizer.Type != "BertPreTokenizer" {
		return nil, fmt.Errorf("tokenizer.json: pre_tokenizer %q; the BERT encoder reads BertPreTokenizer", tj.PreTokenizer.Type)
	}
	w := &WordPiece{vocab: tj.Model.Vocab, prefix: "##", maxChars: 100, clean: true, chinese: true, low: true}
	if tj.Model.Prefix != nil {
		w.prefix = *tj.Model.Prefix
	}
	if tj.Model.MaxChars > 0 {
		w.maxChars = tj.Model.MaxChars
	}
	if n := tj.Normalizer; n != nil {
		if n.Type != "BertNormalizer" {
			return nil, fmt.Errorf("tokenizer.json: normalizer %q; the BERT encoder reads BertNormalizer", n.Type)
		}
		set := func(dst *bool, v *bool) {
			if v != nil {
				*dst = *v
			}
		}
		set(&w.clean, n.CleanText)
		set(&w.chinese, n.HandleCJK)
		set(&w.low, n.Lowercase)
		w.strip = w.low // strip_accents null follows lowercase
		set(&w.strip, n.StripAccents)
	}
	var ok bool
	for _, sp := range []struct {
		name string
		dst  *int
	}{{tj.Model.Unk, &w.unk}, {"[CLS]", &w.cls}, {"[SEP]", &w.sep}} {
		if *sp.dst, ok = w.vocab[sp.name]; !ok {
			return nil, fmt.Errorf("tokenizer.json: the vocabulary has no %q", sp.name)
		}
	}
	return w, nil
}

// normalize applies the BertNormalizer.
func (w *WordPiece) normalize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if w.clean {
			if r == 0 || r == 0xfffd || isControl(r) {
				continue
			}
			if isSpace(r) {
				r = ' '
			}
		}
		if w.chinese && isCJK(r) {
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
			continue
		}
		b.WriteRune(r)
	}
	s = b.String()
	if w.strip {
		d := norm.NFD.String(s)
		b.Reset()
		for _, r := range d {
			if !unicode.Is(unicode.Mn, r) {
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	if w.low {
		s = strings.ToLower(s)
	}
	return s
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.C)
}

func isPunct(r rune) bool {
	return (r < 128 && unicode.IsPunct(r)) || (r < 128 && unicode.IsSymbol(r)) || unicode.IsPunct(r)
}

func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) || (r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) || (r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}

// words applies the BertPreTokenizer.
func words(s string) []string {
	var out []string
	start := -1
	for i, r := range s {
		switch {
		case isSpace(r):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		case isPunct(r):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			out = append(out, string(r))
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// Encode returns the token ids of text with [CLS] and [SEP] around it, at
// most maxLen in all (0: no limit).
func (w *WordPiece) Encode(text string, maxLen int) []int {
	ids := []int{w.cls}
	for _, word := range words(w.normalize(text)) {
		ids = append(ids, w.piece(word)...)
	}
	if maxLen >= 2 && len(ids)+1 > maxLen {
		ids = ids[:maxLen-1]
	}
	return append(ids, w.sep)
}

// piece splits one word greedily, longest match first; a word with a part
// outside the vocabulary, or over maxChars characters, is [UNK].
func (w *WordPiece) piece(word string) []int {
	runes := []rune(word)
	if len(runes) > w.maxChars {
		return []int{w.unk}
	}
	var out []int
	for start := 0; start < len(runes); {
		found := -1
		end := len(runes)
		for ; end > start; end-- {
			sub := string(runes[start:end])
			if start > 0 {
				sub = w.prefix + sub
			}
			if id, ok := w.vocab[sub]; ok {
				found = id
				break
			}
		}
		if found < 0 {
			return []int{w.unk}
		}
		out = append(out, found)
		start = end
	}
	return out
}
