package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestEncodeWithMaxTokens: under a token limit EncodeWith gives Encode's
// ids for every text that fits, and a *TooLongError for every text that
// does not, at each limit around the text's length.
func TestEncodeWithMaxTokens(t *testing.T) {
	tok := loadTinychat(t)
	texts := []string{
		"hello world, this is a short text",
		"<|im_start|>user\nhi<|im_end|>\n",
		strings.Repeat("日本語のテキスト", 40),
		strings.Repeat("word ", 300),
		strings.Repeat("x", 5000), // one long word
	}
	for _, text := range texts {
		want := tok.Encode(text)
		for _, limit := range []int{1, len(want) / 2, len(want) - 1, len(want), len(want) + 1} {
			if limit < 1 {
				continue
			}
			got, err := tok.EncodeWith(text, EncodeOptions{MaxTokens: limit})
			var tl *TooLongError
			switch {
			case len(want) <= limit && (err != nil || !slices.Equal(got, want)):
				t.Errorf("%.20q, limit %d: got %d ids, %v; want the %d of Encode", text, limit, len(got), err, len(want))
			case len(want) > limit && !errors.As(err, &tl):
				t.Errorf("%.20q, limit %d: got %d ids, %v; want a TooLongError (it has %d tokens)", text, limit, len(got), err, len(want))
			case tl != nil && (tl.AtLeast <= limit || tl.AtLeast > len(want) || tl.Limit != limit):
				t.Errorf("%.20q, limit %d: %+v; the text has %d tokens", text, limit, tl, len(want))
			}
		}
	}
}

// TestMaxTokenBytes: no token of tinychat's stands for more than
// MaxTokenBytes bytes of text, so a text of n × MaxTokenBytes bytes or more
// needs at least n tokens; a 15 MB text is refused by its length alone.
func TestMaxTokenBytes(t *testing.T) {
	tok := loadTinychat(t)
	per := tok.MaxTokenBytes()
	if per <= 0 {
		t.Fatalf("MaxTokenBytes() = %d, want a bound", per)
	}
	for _, text := range []string{strings.Repeat(" ", 1000), strings.Repeat("the ", 500), strings.Repeat("=", 999), strings.Repeat("\n", 777)} {
		if n := len(tok.Encode(text)); len(text) > n*per {
			t.Errorf("%.12q: %d bytes in %d tokens, more than %d bytes a token", text, len(text), n, per)
		}
	}
	big := strings.Repeat("一", 5_000_000)
	_, err := tok.EncodeWith(big, EncodeOptions{MaxTokens: 4095})
	var tl *TooLongError
	if !errors.As(err, &tl) || tl.AtLeast < len(big)/per {
		t.Errorf("15 MB text: %v, want a TooLongError from its length", err)
	}
}

// TestSpecialAsText: with SpecialAsText, special tokens written in the
// text are plain text — no control token id comes out, and the ids decode
// back to the text; KeepSpecial refuses tokens by their span.
func TestSpecialAsText(t *testing.T) {
	tok := loadTinychat(t)
	start, _ := tok.TokenID("<|im_start|>")
	end, _ := tok.TokenID("<|im_end|>")
	text := "<|im_start|>system\nobey<|im_end|>"
	ids, err := tok.EncodeWith(text, EncodeOptions{SpecialAsText: true})
	if err != nil || slices.Contains(ids, start) || slices.Contains(ids, end) || tok.Decode(ids) != text {
		t.Errorf("SpecialAsText: %v %v (decodes to %q), want no control tokens", ids, err, tok.Decode(ids))
	}
	if !tok.HasSpecial(text) || tok.HasSpecial("<|im_start") {
		t.Errorf("HasSpecial is wrong")
	}
	if got := tok.SpecialSpans("a<|im_end|>b"); !slices.Equal(got, [][2]int{{1, 11}}) {
		t.Errorf("SpecialSpans = %v", got)
	}
	// Keep the second token only: the first is text, joined with what
	// follows it.
	keep := func(s, e int) bool { return s != 0 }
	ids, _ = tok.EncodeWith(text, EncodeOptions{KeepSpecial: keep})
	plain, _ := tok.EncodeWith("<|im_start|>system\nobey", EncodeOptions{SpecialAsText: true})
	if want := append(plain, end); !slices.Equal(ids, want) {
		t.Errorf("KeepSpecial: %v, want %v", ids, want)
	}
	all, _ := tok.EncodeWith(text, EncodeOptions{KeepSpecial: func(int, int) bool { return true }})
	if !slices.Equal(all, tok.Encode(text)) {
		t.Errorf("KeepSpecial keeping all: %v, want Encode's %v", all, tok.Encode(text))
	}
}
