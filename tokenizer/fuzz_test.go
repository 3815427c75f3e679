package tokenizer

import (
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/kvserve/kvserve/internal/fuzzguard"
)

var (
	fuzzOnce sync.Once
	fuzzTok  *Tokenizer
	fuzzErr  error
)

// FuzzEncodeDecode: Decode(Encode(s)) == s for valid UTF-8; for any input,
// no panic, and streaming decode agrees with Decode.
func FuzzEncodeDecode(f *testing.F) {
	for _, s := range []string{
		"", "a  b", "a \n\n b", "I'M don't", "<|im_start|>user\nhi<|im_end|>\n",
		"\t\tx  ", "١٢٣٤ 1234567", "😀\u00a0\u3000\u2028", "\xff\xfe", "a\xe2\x82", "'\u017f",
		"package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(",
	} {
		f.Add(s)
	}
	fuzzOnce.Do(func() { fuzzTok, fuzzErr = LoadDir(tinychatDir) })
	if fuzzErr != nil {
		f.Fatal(fuzzErr)
	}
	tok := fuzzTok
	f.Fuzz(func(t *testing.T, s string) {
		defer fuzzguard.Start(t, len(s))()
		ids := tok.Encode(s)
		dec := tok.Decode(ids)
		if utf8.ValidString(s) && dec != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, dec)
		}
		st := NewStream(tok)
		var b strings.Builder
		for _, id := range ids {
			b.WriteString(st.Push(id))
		}
		b.WriteString(st.Flush())
		if b.String() != dec {
			t.Fatalf("stream of Encode(%q) = %q, Decode = %q", s, b.String(), dec)
		}
	})
}

// FuzzParse: Parse never panics, and what it accepts can encode and decode.
func FuzzParse(f *testing.F) {
	// Small seeds keep the fuzzer's minimization fast; together they use
	// every supported component.
	f.Add([]byte(tiny("", `{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "`+strings.ReplaceAll(patternLlama3, `\`, `\\`)+`"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}`, `, "decoder": {"type": "ByteLevel"}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "a"}}], "special_tokens": {"a": {"ids": [0]}}}`)))
	f.Add([]byte(tiny("", `{"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}`, `, "normalizer": {"type": "NFC"}, "decoder": {"type": "Sequence", "decoders": [{"type": "ByteLevel"}]}`)))
	f.Add([]byte(tiny("", "", "")))
	f.Add([]byte(tiny(`{"type": "BPE", "unk_token": "a", "fuse_unk": true, "byte_fallback": true, "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>", "vocab": {"a": 0, "b": 1, "##b": 3, "ab": 2, "<0x41>": 4}, "merges": [["a", "##b"]]}`, "", "")))
	f.Add([]byte(tiny("", `{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "b"}, "behavior": "MergedWithNext", "invert": true}, {"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "add_prefix_space": true}]}`, `, "normalizer": {"type": "NFKC"}, "decoder": {"type": "ByteLevel"}`)))
	f.Add([]byte(`{"added_tokens": [{"id": 1, "content": "ab", "single_word": true, "lstrip": true, "rstrip": true}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer fuzzguard.Start(t, len(data))()
		tok, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range []string{"", "ab ab", " a\n\nb1234 ", "\xff<0x41>ab##b"} {
			ids := tok.Encode(s)
			tok.Decode(ids)
			st := NewStream(tok)
			for _, id := range ids {
				st.Push(id)
			}
			st.Flush()
		}
		tok.Decode([]int{-1, 0, 1, 2, tok.VocabSize()})
		tok.TokenString(0)
		tok.BOS()
	})
}
