package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

// scan cuts s with one of the hand-written regex scanners.
func scan(s string, m func(string, int) int) []string {
	var out []string
	for i := 0; i < len(s); {
		n := m(s, i)
		if n <= 0 {
			panic("empty match")
		}
		out = append(out, s[i:i+n])
		i += n
	}
	return out
}

// TestScanners checks the look-ahead regex scanners against the pieces
// that HF tokenizers 0.22 (Oniguruma) cuts the same texts into.
func TestScanners(t *testing.T) {
	type ss = []string
	cases := []struct {
		in                  string
		llama3, qwen2, gpt2 ss
	}{
		{"a  b",
			ss{"a", " ", " b"},
			ss{"a", " ", " b"},
			ss{"a", " ", " b"}},
		{"a \n\n b",
			ss{"a", " \n\n", " b"},
			ss{"a", " \n\n", " b"},
			ss{"a", " \n\n", " b"}},
		{"trailing  ",
			ss{"trailing", "  "},
			ss{"trailing", "  "},
			ss{"trailing", "  "}},
		{"trailing ",
			ss{"trailing", " "},
			ss{"trailing", " "},
			ss{"trailing", " "}},
		{" ",
			ss{" "},
			ss{" "},
			ss{" "}},
		{"  ",
			ss{"  "},
			ss{"  "},
			ss{"  "}},
		{"\t\tx",
			ss{"\t", "\tx"},
			ss{"\t", "\tx"},
			ss{"\t", "\t", "x"}},
		{"a\tb",
			ss{"a", "\tb"},
			ss{"a", "\tb"},
			ss{"a", "\t", "b"}},
		{"x \t y",
			ss{"x", " \t", " y"},
			ss{"x", " \t", " y"},
			ss{"x", " \t", " y"}},
		{"I'M",
			ss{"I", "'M"},
			ss{"I", "'M"},
			ss{"I", "'", "M"}},
		{"don't",
			ss{"don", "'t"},
			ss{"don", "'t"},
			ss{"don", "'t"}},
		{"DON'T",
			ss{"DON", "'T"},
			ss{"DON", "'T"},
			ss{"DON", "'", "T"}},
		{"we'll've",
			ss{"we", "'ll", "'ve"},
			ss{"we", "'ll", "'ve"},
			ss{"we", "'ll", "'ve"}},
		{"'s",
			ss{"'s"},
			ss{"'s"},
			ss{"'s"}},
		{"it'S",
			ss{"it", "'S"},
			ss{"it", "'S"},
			ss{"it", "'", "S"}},
		{"'\u017f",
			ss{"'\u017f"},
			ss{"'\u017f"},
			ss{"'", "\u017f"}},
		{"x'Re'VE",
			ss{"x", "'Re", "'VE"},
			ss{"x", "'Re", "'VE"},
			ss{"x", "'", "Re", "'", "VE"}},
		{"'l",
			ss{"'l"},
			ss{"'l"},
			ss{"'", "l"}},
		{"hello world",
			ss{"hello", " world"},
			ss{"hello", " world"},
			ss{"hello", " world"}},
		{"  hello",
			ss{" ", " hello"},
			ss{" ", " hello"},
			ss{" ", " hello"}},
		{"123456789",
			ss{"123", "456", "789"},
			ss{"1", "2", "3", "4", "5", "6", "7", "8", "9"},
			ss{"123456789"}},
		{"1234 56",
			ss{"123", "4", " ", "56"},
			ss{"1", "2", "3", "4", " ", "5", "6"},
			ss{"1234", " 56"}},
		{"\u0663\u0664\u0665\u0666\u0667",
			ss{"\u0663\u0664\u0665", "\u0666\u0667"},
			ss{"\u0663", "\u0664", "\u0665", "\u0666", "\u0667"},
			ss{"\u0663\u0664\u0665\u0666\u0667"}},
		{"\u00bd\u00b2",
			ss{"\u00bd\u00b2"},
			ss{"\u00bd", "\u00b2"},
			ss{"\u00bd\u00b2"}},
		{"\u2167x",
			ss{"\u2167", "x"},
			ss{"\u2167", "x"},
			ss{"\u2167", "x"}},
		{"caf\u00e9",
			ss{"caf\u00e9"},
			ss{"caf\u00e9"},
			ss{"caf\u00e9"}},
		{"e\u0301",
			ss{"e", "\u0301"},
			ss{"e", "\u0301"},
			ss{"e", "\u0301"}},
		{"\u65e5\u672c\u8a9e \u30c6\u30ad\u30b9\u30c8",
			ss{"\u65e5\u672c\u8a9e", " \u30c6\u30ad\u30b9\u30c8"},
			ss{"\u65e5\u672c\u8a9e", " \u30c6\u30ad\u30b9\u30c8"},
			ss{"\u65e5\u672c\u8a9e", " \u30c6\u30ad\u30b9\u30c8"}},
		{"\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439 \u043c\u0438\u0440",
			ss{"\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439", " \u043c\u0438\u0440"},
			ss{"\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439", " \u043c\u0438\u0440"},
			ss{"\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439", " \u043c\u0438\u0440"}},
		{"emoji \U0001f600\U0001f600 ok",
			ss{"emoji", " \U0001f600\U0001f600", " ok"},
			ss{"emoji", " \U0001f600\U0001f600", " ok"},
			ss{"emoji", " \U0001f600\U0001f600", " ok"}},
		{"a\r\nb",
			ss{"a", "\r\n", "b"},
			ss{"a", "\r\n", "b"},
			ss{"a", "\r", "\n", "b"}},
		{"x \r\n\r\n  y",
			ss{"x", " \r\n\r\n", " ", " y"},
			ss{"x", " \r\n\r\n", " ", " y"},
			ss{"x", " \r\n\r\n ", " y"}},
		{"foo.bar()",
			ss{"foo", ".bar", "()"},
			ss{"foo", ".bar", "()"},
			ss{"foo", ".", "bar", "()"}},
		{"  ...\n\n",
			ss{" ", " ...\n\n"},
			ss{" ", " ...\n\n"},
			ss{" ", " ...", "\n\n"}},
		{"!!!\n\nabc",
			ss{"!!!\n\n", "abc"},
			ss{"!!!\n\n", "abc"},
			ss{"!!!", "\n", "\n", "abc"}},
		{" !!\r\n",
			ss{" !!\r\n"},
			ss{" !!\r\n"},
			ss{" !!", "\r\n"}},
		{"a\u00a0b",
			ss{"a", "\u00a0b"},
			ss{"a", "\u00a0b"},
			ss{"a", "\u00a0", "b"}},
		{"a\u00a0\u00a0b",
			ss{"a", "\u00a0", "\u00a0b"},
			ss{"a", "\u00a0", "\u00a0b"},
			ss{"a", "\u00a0", "\u00a0", "b"}},
		{"a\u3000b",
			ss{"a", "\u3000b"},
			ss{"a", "\u3000b"},
			ss{"a", "\u3000", "b"}},
		{"x\u2028y",
			ss{"x", "\u2028y"},
			ss{"x", "\u2028y"},
			ss{"x", "\u2028", "y"}},
		{"\ufeffa",
			ss{"\ufeffa"},
			ss{"\ufeffa"},
			ss{"\ufeff", "a"}},
		{"x\u200by",
			ss{"x", "\u200by"},
			ss{"x", "\u200by"},
			ss{"x", "\u200b", "y"}},
		{"x  \ty",
			ss{"x", "  ", "\ty"},
			ss{"x", "  ", "\ty"},
			ss{"x", "  ", "\t", "y"}},
		{"func main() {\n\tfmt.Println(\"hi\")\n}\n",
			ss{"func", " main", "()", " {\n", "\tfmt", ".Println", "(\"", "hi", "\")\n", "}\n"},
			ss{"func", " main", "()", " {\n", "\tfmt", ".Println", "(\"", "hi", "\")\n", "}\n"},
			ss{"func", " main", "()", " {", "\n", "\t", "fmt", ".", "Println", "(\"", "hi", "\")", "\n", "}", "\n"}},
		{"$x = 10;  // c",
			ss{"$x", " =", " ", "10", ";", " ", " //", " c"},
			ss{"$x", " =", " ", "1", "0", ";", " ", " //", " c"},
			ss{"$", "x", " =", " 10", ";", " ", " //", " c"}},
		{"mixed123abc",
			ss{"mixed", "123", "abc"},
			ss{"mixed", "1", "2", "3", "abc"},
			ss{"mixed", "123", "abc"}},
		{"a1b22c333",
			ss{"a", "1", "b", "22", "c", "333"},
			ss{"a", "1", "b", "2", "2", "c", "3", "3", "3"},
			ss{"a", "1", "b", "22", "c", "333"}},
		{" 'll",
			ss{" '", "ll"},
			ss{" '", "ll"},
			ss{" '", "ll"}},
		{"\n",
			ss{"\n"},
			ss{"\n"},
			ss{"\n"}},
		{"\n\n\n",
			ss{"\n\n\n"},
			ss{"\n\n\n"},
			ss{"\n\n\n"}},
		{"   \n",
			ss{"   \n"},
			ss{"   \n"},
			ss{"   \n"}},
		{"a \n",
			ss{"a", " \n"},
			ss{"a", " \n"},
			ss{"a", " \n"}},
		{"tab\t\n\tx",
			ss{"tab", "\t\n", "\tx"},
			ss{"tab", "\t\n", "\tx"},
			ss{"tab", "\t\n", "\t", "x"}},
		{"  \n  x",
			ss{"  \n", " ", " x"},
			ss{"  \n", " ", " x"},
			ss{"  \n ", " x"}},
		{"x\v\fy",
			ss{"x", "\v", "\fy"},
			ss{"x", "\v", "\fy"},
			ss{"x", "\v", "\f", "y"}},
		{"\u0085a",
			ss{"\u0085a"},
			ss{"\u0085a"},
			ss{"\u0085", "a"}},
		{" ?!x",
			ss{" ?!", "x"},
			ss{" ?!", "x"},
			ss{" ?!", "x"}},
		{"?a",
			ss{"?a"},
			ss{"?a"},
			ss{"?", "a"}},
		{" 1",
			ss{" ", "1"},
			ss{" ", "1"},
			ss{" 1"}},
		{"_id",
			ss{"_id"},
			ss{"_id"},
			ss{"_", "id"}},
		{"",
			ss{},
			ss{},
			ss{}},
	}
	for _, c := range cases {
		for _, sc := range []struct {
			name string
			m    func(string, int) int
			want []string
		}{
			{"llama3", func(s string, i int) int { return matchLlama3(s, i, 3) }, c.llama3},
			{"qwen2", func(s string, i int) int { return matchLlama3(s, i, 1) }, c.qwen2},
			{"gpt2", matchGPT2, c.gpt2},
		} {
			if got := scan(c.in, sc.m); !slices.Equal(got, sc.want) {
				t.Errorf("%s %+q:\n got %+q\nwant %+q", sc.name, c.in, got, sc.want)
			}
		}
	}
}

// TestScannersCover checks that the scanners cut any text, valid UTF-8 or
// not, into non-empty pieces that add up to it.
func TestScannersCover(t *testing.T) {
	for _, s := range []string{"\xff\xfe a", "a\xe2\x82", "'\xc5", "'\xc5\xbf", " \xff", "\r\n\xff"} {
		for _, m := range []func(string, int) int{matchGPT2, func(s string, i int) int { return matchLlama3(s, i, 3) }} {
			if got := strings.Join(scan(s, m), ""); got != s {
				t.Errorf("%q: pieces add up to %q", s, got)
			}
		}
	}
}

// TestSplitBehaviors checks how each Split behavior treats the text a
// pattern matched, with and without invert.
func TestSplitBehaviors(t *testing.T) {
	str := func(s string) *string { return &s }
	cases := []struct {
		pattern  patternJSON
		behavior behavior
		invert   bool
		in       string
		want     []string
	}{
		{patternJSON{String: str("-")}, isolated, false, "a-b--c", []string{"a", "-", "b", "-", "-", "c"}},
		{patternJSON{String: str("-")}, removed, false, "a-b--c-", []string{"a", "b", "c"}},
		{patternJSON{String: str("-")}, mergedWithPrevious, false, "-a-b--c", []string{"-", "a-", "b-", "-", "c"}},
		{patternJSON{String: str("-")}, mergedWithNext, false, "a-b--c-", []string{"a", "-b", "-", "-c", "-"}},
		{patternJSON{String: str("-")}, contiguous, false, "a-b--c", []string{"a", "-", "b", "--", "c"}},
		{patternJSON{Regex: str(`\p{L}+`)}, isolated, true, "ab, cd!", []string{"ab", ", ", "cd", "!"}},
		{patternJSON{Regex: str(`[a-z]+`)}, mergedWithPrevious, true, "ab, cd!", []string{"ab, ", "cd!"}},
		{patternJSON{Regex: str(`\s+`)}, removed, false, " a \u00a0b\u3000", []string{"a", "b"}},
		{patternJSON{Regex: str(`\d+|\w+`)}, isolated, false, "x٣٤ é_1", []string{"x٣٤", " ", "é_1"}},
		{patternJSON{String: str("")}, isolated, false, "abc", []string{"abc"}},
	}
	for _, c := range cases {
		m, err := compilePattern(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		st := &splitStage{m: m, behavior: c.behavior, invert: c.invert}
		var got []string
		st.split(c.in, func(s string) { got = append(got, s) })
		if !slices.Equal(got, c.want) {
			t.Errorf("%+v behavior %d invert %v on %q:\n got %q\nwant %q", c.pattern, c.behavior, c.invert, c.in, got, c.want)
		}
	}
}

func TestCompilePattern(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, c := range []struct {
		pattern patternJSON
		err     string // "" for success
	}{
		{patternJSON{Regex: str(patternLlama3)}, ""},
		{patternJSON{Regex: str(patternQwen2)}, ""},
		{patternJSON{Regex: str(patternGPT2)}, ""},
		{patternJSON{Regex: str(`\s+(?!\S)|\w+`)}, "look-around"},
		{patternJSON{Regex: str(`(?<=a)b`)}, "look-around"},
		{patternJSON{Regex: str(`a(`)}, "missing closing )"},
		{patternJSON{Regex: str(`[\S]`)}, `\S inside a character class`},
		{patternJSON{}, "neither String nor Regex"},
	} {
		_, err := compilePattern(c.pattern)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%+v: %v", c.pattern, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%+v: error %v, want one containing %q", c.pattern, err, c.err)
		}
	}
}
