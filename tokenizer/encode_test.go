package tokenizer

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestEncodeTinychat checks hand-made texts against the ids HF tokenizers
// 0.22 gives with tinychat's tokenizer (Llama 3 regex, special tokens).
func TestEncodeTinychat(t *testing.T) {
	tok := loadTinychat(t)
	cases := []struct {
		in   string
		want []int
	}{
		{"a  b", []int{67, 223, 294}},
		{"a \n\n b", []int{67, 3984, 294}},
		{"trailing spaces   ", []int{363, 3274, 1149, 2476, 586}},
		{"\ttabs\t\there\t", []int{771, 2721, 200, 1133, 888, 200}},
		{"I'M", []int{43, 9, 47}},
		{"don't", []int{70, 279, 1000}},
		{"we'LL 'Ve 'd", []int{2570, 9, 1989, 686, 56, 71, 686, 70}},
		{"naïve café ÀÉÎ", []int{80, 67, 130, 110, 416, 285, 450, 130, 105, 223, 130, 225, 130, 234, 130, 239}},
		{"Здравствуй, мир", []int{143, 248, 143, 115, 144, 225, 143, 111, 143, 113, 144, 226, 144, 227, 143, 113, 144, 228, 143, 120, 14, 223, 143, 123, 143, 119, 144, 225}},
		{"日本語", []int{165, 248, 101, 165, 253, 108, 167, 106, 255}},
		{"١٢٣٤ 1234567", []int{152, 97, 152, 98, 152, 99, 152, 100, 223, 3761, 22, 930, 25}},
		{"😀 emoji", []int{175, 256, 249, 225, 360, 79, 81, 76, 75}},
		{"<|im_start|>user\nhi<|im_end|>\n", []int{1, 614, 201, 2015, 2, 201}},
		{"x<|im_start|><|im_end|>y", []int{90, 1, 2, 91}},
		{"<|im_start", []int{322, 298, 399}},
		{"\u00a0\u3000\u2028", []int{129, 257, 162, 225, 225, 161, 225, 104}},
		{"func f() {\n\treturn\n}\n\n\n", []int{329, 283, 349, 282, 313, 201, 341, 201}},
		{"", nil},
	}
	for _, c := range cases {
		got := tok.Encode(c.in)
		if !slices.Equal(got, c.want) && len(got)+len(c.want) > 0 {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
		if dec := tok.Decode(got); dec != c.in {
			t.Errorf("Decode(Encode(%q)) = %q", c.in, dec)
		}
	}
}

func TestAccessors(t *testing.T) {
	tok := loadTinychat(t)
	if n := tok.VocabSize(); n != 4096 {
		t.Errorf("VocabSize() = %d, want 4096", n)
	}
	for _, c := range []struct {
		token   string
		id      int
		special bool
	}{
		{"<|endoftext|>", 0, true},
		{"<|im_start|>", 1, true},
		{"<|im_end|>", 2, true},
		{"Ġ", 223, false},
		{"a", 67, false},
	} {
		id, ok := tok.TokenID(c.token)
		if !ok || id != c.id {
			t.Errorf("TokenID(%q) = %d, %v; want %d", c.token, id, ok, c.id)
		}
		if s := tok.TokenString(c.id); s != c.token {
			t.Errorf("TokenString(%d) = %q, want %q", c.id, s, c.token)
		}
		if sp := tok.IsSpecial(c.id); sp != c.special {
			t.Errorf("IsSpecial(%d) = %v", c.id, sp)
		}
	}
	if _, ok := tok.TokenID("no such token"); ok {
		t.Error("TokenID of an unknown token succeeded")
	}
	for _, id := range []int{-1, 4096, math.MaxInt} {
		if s := tok.TokenString(id); s != "" {
			t.Errorf("TokenString(%d) = %q", id, s)
		}
		if tok.IsSpecial(id) {
			t.Errorf("IsSpecial(%d) = true", id)
		}
	}
}

// TestDecodeSkipsUnknownIDs: ids outside the vocabulary are skipped.
func TestDecodeSkipsUnknownIDs(t *testing.T) {
	tok := loadTinychat(t)
	a := tok.Encode("a")
	ids := []int{-1, a[0], 4096, math.MaxInt, a[0], math.MinInt}
	if got := tok.Decode(ids); got != "aa" {
		t.Errorf("Decode(%v) = %q, want %q", ids, got, "aa")
	}
	s := NewStream(tok)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(s.Push(id))
	}
	if got := b.String() + s.Flush(); got != "aa" {
		t.Errorf("stream of %v = %q, want %q", ids, got, "aa")
	}
}

// byteIDs returns the byte-level token of each byte of s.
func byteIDs(t *testing.T, tok *Tokenizer, s string) []int {
	t.Helper()
	var ids []int
	for i := 0; i < len(s); i++ {
		id, ok := tok.TokenID(string(byteToRune[s[i]]))
		if !ok {
			t.Fatalf("no token for byte %#x", s[i])
		}
		ids = append(ids, id)
	}
	return ids
}

func TestStream(t *testing.T) {
	tok := loadTinychat(t)
	cases := []struct {
		name   string
		ids    []int
		pushes []string // what each Push returns
		flush  string
	}{
		{"euro byte by byte", byteIDs(t, tok, "€"), []string{"", "", "€"}, ""},
		{"emoji then ascii", byteIDs(t, tok, "😀a"), []string{"", "", "", "😀", "a"}, ""},
		{"incomplete at the end", byteIDs(t, tok, "a\xe2\x82"), []string{"a", "", ""}, "\uFFFD"},
		{"broken by ascii", byteIDs(t, tok, "\xe2\x82a"), []string{"", "", "\uFFFDa"}, ""},
		{"invalid byte at once", byteIDs(t, tok, "\xffb"), []string{"\uFFFD", "b"}, ""},
		{"surrogate", byteIDs(t, tok, "\xed\xa0\x80"), []string{"", "\uFFFD\uFFFD", "\uFFFD"}, ""},
		{"special token", []int{1, 2}, []string{"<|im_start|>", "<|im_end|>"}, ""},
	}
	for _, c := range cases {
		s := NewStream(tok)
		var all strings.Builder
		for k, id := range c.ids {
			got := s.Push(id)
			if !utf8.ValidString(got) {
				t.Errorf("%s: Push %d returned invalid UTF-8 %q", c.name, k, got)
			}
			if got != c.pushes[k] {
				t.Errorf("%s: Push %d = %q, want %q", c.name, k, got, c.pushes[k])
			}
			all.WriteString(got)
		}
		if got := s.Flush(); got != c.flush {
			t.Errorf("%s: Flush() = %q, want %q", c.name, got, c.flush)
		}
		all.WriteString(c.flush)
		if want := tok.Decode(c.ids); all.String() != want {
			t.Errorf("%s: stream gave %q, Decode %q", c.name, all.String(), want)
		}
		// The stream is ready for a new sequence.
		if got := s.Push(c.ids[0]) + s.Flush(); got != tok.Decode(c.ids[:1]) {
			t.Errorf("%s: after Flush, stream gave %q", c.name, got)
		}
	}
}

// TestLossy checks U+FFFD replacement against Rust's from_utf8_lossy: one
// replacement per maximal ill-formed subpart.
func TestLossy(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"abc", "abc"},
		{"\xff", "\uFFFD"},
		{"\xff\xfe", "\uFFFD\uFFFD"},
		{"\xe2\x82", "\uFFFD"},
		{"\xe2\x82a", "\uFFFDa"},
		{"\xf0\x9f\x98", "\uFFFD"},
		{"\xf0\x9f\x98\xf0\x9f\x98\x80", "\uFFFD😀"},
		{"\xe0\x80\x80", "\uFFFD\uFFFD\uFFFD"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"},
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xc0\xaf", "\uFFFD\uFFFD"},
		{"\xef\xbf\xbd", "\uFFFD"},
	} {
		if got := lossyString([]byte(c.in)); got != c.want {
			t.Errorf("lossyString(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
