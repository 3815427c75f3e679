package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A stage is one pre-tokenizer: it cuts a piece of text into smaller
// pieces and passes each to emit. Pieces are never empty.
type stage interface {
	split(s string, emit func(string))
}

// pipeline runs stages one after the other.
type pipeline []stage

// chain returns a function that runs s through all stages and passes the
// final pieces to emit.
func (p pipeline) chain(emit func(string)) func(string) {
	for k := len(p) - 1; k >= 0; k-- {
		st, next := p[k], emit
		emit = func(s string) { st.split(s, next) }
	}
	return func(s string) {
		if s != "" {
			emit(s)
		}
	}
}

// A span is a part of a text and whether a split pattern matched it.
type span struct {
	start, end int
	match      bool
}

// A matcher finds where a split pattern matches in s. It appends spans
// that cover s from start to end, in order.
type matcher interface {
	spans(s string, dst []span) []span
}

// scanMatcher runs one of the hand-written regex scanners. Every position
// starts a match, so the spans are all matches.
type scanMatcher func(s string, i int) int

func (m scanMatcher) spans(s string, dst []span) []span {
	for i := 0; i < len(s); {
		n := m(s, i)
		dst = append(dst, span{i, i + n, true})
		i += n
	}
	return dst
}

// regexMatcher runs a pattern that Go's regexp can run.
type regexMatcher struct{ re *regexp.Regexp }

func (m regexMatcher) spans(s string, dst []span) []span {
	prev := 0
	for _, loc := range m.re.FindAllStringIndex(s, -1) {
		if loc[0] > prev {
			dst = append(dst, span{prev, loc[0], false})
		}
		dst = append(dst, span{loc[0], loc[1], true})
		prev = loc[1]
	}
	if prev < len(s) {
		dst = append(dst, span{prev, len(s), false})
	}
	return dst
}

// literalMatcher matches a fixed string.
type literalMatcher string

func (m literalMatcher) spans(s string, dst []span) []span {
	prev := 0
	if m != "" {
		for {
			k := strings.Index(s[prev:], string(m))
			if k < 0 {
				break
			}
			if k > 0 {
				dst = append(dst, span{prev, prev + k, false})
			}
			dst = append(dst, span{prev + k, prev + k + len(m), true})
			prev += k + len(m)
		}
	}
	if prev < len(s) {
		dst = append(dst, span{prev, len(s), false})
	}
	return dst
}

// digitMatcher matches each numeric character on its own, as the Digits
// pre-tokenizer does.
type digitMatcher struct{}

func (digitMatcher) spans(s string, dst []span) []span {
	prev := 0
	for i, r := range s {
		if unicode.IsNumber(r) {
			if i > prev {
				dst = append(dst, span{prev, i, false})
			}
			w := utf8.RuneLen(r)
			if w < 0 {
				w = 1
			}
			dst = append(dst, span{i, i + w, true})
			prev = i + w
		}
	}
	if prev < len(s) {
		dst = append(dst, span{prev, len(s), false})
	}
	return dst
}

// How a Split pre-tokenizer treats the text its pattern matched.
type behavior uint8

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

var behaviors = map[string]behavior{
	"Removed":            removed,
	"Isolated":           isolated,
	"MergedWithPrevious": mergedWithPrevious,
	"MergedWithNext":     mergedWithNext,
	"Contiguous":         contiguous,
}

// splitStage is HF's Split pre-tokenizer (and Digits, which is a Split on
// numeric characters).
type splitStage struct {
	m        matcher
	behavior behavior
	invert   bool
}

func (st *splitStage) split(s string, emit func(string)) {
	if sm, ok := st.m.(scanMatcher); ok && st.behavior == isolated && !st.invert {
		// The common case: every match is a piece.
		for i := 0; i < len(s); {
			n := sm(s, i)
			emit(s[i : i+n])
			i += n
		}
		return
	}
	sp := st.m.spans(s, nil)
	if st.invert {
		for k := range sp {
			sp[k].match = !sp[k].match
		}
	}
	sp = applyBehavior(sp, st.behavior)
	for _, x := range sp {
		if x.end > x.start {
			emit(s[x.start:x.end])
		}
	}
}

// applyBehavior merges or drops spans as HF's SplitDelimiterBehavior does.
func applyBehavior(sp []span, b behavior) []span {
	var out []span
	switch b {
	case isolated:
		return sp
	case removed:
		for _, x := range sp {
			if !x.match {
				out = append(out, x)
			}
		}
	case mergedWithPrevious:
		prevMatch := false
		for _, x := range sp {
			if x.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = x.end
			} else {
				out = append(out, x)
			}
			prevMatch = x.match
		}
	case mergedWithNext:
		prevMatch := false
		for k := len(sp) - 1; k >= 0; k-- {
			x := sp[k]
			if x.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = x.start
			} else {
				out = append(out, x)
			}
			prevMatch = x.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case contiguous:
		prevMatch := false
		for _, x := range sp {
			if x.match == prevMatch && len(out) > 0 {
				out[len(out)-1].end = x.end
			} else {
				out = append(out, x)
			}
			prevMatch = x.match
		}
	}
	return out
}

// byteLevelStage is HF's ByteLevel pre-tokenizer. When it is the last
// stage, mapping bytes to the byte-level alphabet is left to the model
// (mapBytes is false), which then caches words by their raw bytes.
type byteLevelStage struct {
	addPrefixSpace bool
	useRegex       bool
	mapBytes       bool
}

func (st *byteLevelStage) split(s string, emit func(string)) {
	if st.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	out := emit
	if st.mapBytes {
		out = func(piece string) { emit(byteLevelEncode(piece)) }
	}
	if !st.useRegex {
		out(s)
		return
	}
	for i := 0; i < len(s); {
		n := matchGPT2(s, i)
		out(s[i : i+n])
		i += n
	}
}

// preTokenizerJSON holds the fields of every supported pre-tokenizer.
type preTokenizerJSON struct {
	Type           string            `json:"type"`
	PreTokenizers  []json.RawMessage `json:"pretokenizers"`
	Pattern        *patternJSON      `json:"pattern"`
	Behavior       string            `json:"behavior"`
	Invert         bool              `json:"invert"`
	AddPrefixSpace bool              `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Individual     bool              `json:"individual_digits"`
}

// patternJSON is a Split pattern: {"String": "..."} or {"Regex": "..."}.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// parsePreTokenizer builds the stages of a pre_tokenizer section and
// reports whether any of them is ByteLevel.
func parsePreTokenizer(raw json.RawMessage, depth int) (stages pipeline, byteLevel bool, err error) {
	if isNull(raw) {
		return nil, false, nil
	}
	if depth > 8 {
		return nil, false, fmt.Errorf("pre-tokenizers nested too deeply")
	}
	var p preTokenizerJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, false, fmt.Errorf("pre_tokenizer: %w", err)
	}
	switch p.Type {
	case "Sequence":
		for k, sub := range p.PreTokenizers {
			st, bl, err := parsePreTokenizer(sub, depth+1)
			if err != nil {
				return nil, false, fmt.Errorf("pre_tokenizer %d of Sequence: %w", k, err)
			}
			stages = append(stages, st...)
			byteLevel = byteLevel || bl
		}
		return stages, byteLevel, nil
	case "Split":
		b, ok := behaviors[p.Behavior]
		if !ok {
			return nil, false, fmt.Errorf("Split: unknown behavior %q", p.Behavior)
		}
		if p.Pattern == nil {
			return nil, false, fmt.Errorf("Split: no pattern")
		}
		m, err := compilePattern(*p.Pattern)
		if err != nil {
			return nil, false, fmt.Errorf("Split: %w", err)
		}
		return pipeline{&splitStage{m: m, behavior: b, invert: p.Invert}}, false, nil
	case "Digits":
		b := contiguous
		if p.Individual {
			b = isolated
		}
		return pipeline{&splitStage{m: digitMatcher{}, behavior: b}}, false, nil
	case "ByteLevel":
		useRegex := p.UseRegex == nil || *p.UseRegex
		return pipeline{&byteLevelStage{addPrefixSpace: p.AddPrefixSpace, useRegex: useRegex, mapBytes: true}}, true, nil
	case "":
		return nil, false, fmt.Errorf("pre_tokenizer has no type")
	}
	return nil, false, fmt.Errorf("unsupported pre_tokenizer type %q", p.Type)
}

// compilePattern picks a matcher for a Split pattern: a hand-written
// scanner for the known look-ahead regexes, Go's regexp for other regexes
// (which must not use look-around), or a literal.
func compilePattern(p patternJSON) (matcher, error) {
	switch {
	case p.String != nil:
		return literalMatcher(*p.String), nil
	case p.Regex == nil:
		return nil, fmt.Errorf("pattern has neither String nor Regex")
	}
	switch re := *p.Regex; re {
	case patternLlama3:
		return scanMatcher(func(s string, i int) int { return matchLlama3(s, i, 3) }), nil
	case patternQwen2:
		return scanMatcher(func(s string, i int) int { return matchLlama3(s, i, 1) }), nil
	case patternGPT2:
		return scanMatcher(matchGPT2), nil
	}
	re := *p.Regex
	for _, la := range []string{"(?=", "(?!", "(?<=", "(?<!"} {
		if strings.Contains(re, la) {
			return nil, fmt.Errorf("regex %q uses look-around (%s...), which only the known Llama 3, Qwen2 and GPT-2 patterns support", re, la)
		}
	}
	tr, err := translateRegex(re)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", re, err)
	}
	c, err := regexp.Compile(tr)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", re, err)
	}
	return regexMatcher{c}, nil
}

// Unicode versions of the Perl classes, which are ASCII-only in Go's
// regexp but Unicode-aware in Oniguruma, which HF tokenizers uses.
const (
	spaceRanges = `\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`
	wordRanges  = `\p{L}\p{M}\p{Nd}\p{Pc}`
)

// translateRegex rewrites \s \S \d \D \w \W into their Unicode meaning.
func translateRegex(re string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(re); i++ {
		c := re[i]
		if c == '\\' && i+1 < len(re) {
			e := re[i+1]
			i++
			var out string
			switch e {
			case 's':
				out = "[" + spaceRanges + "]"
				if inClass {
					out = spaceRanges
				}
			case 'd':
				out = `\p{Nd}`
			case 'D':
				out = `\P{Nd}`
			case 'w':
				out = "[" + wordRanges + "]"
				if inClass {
					out = wordRanges
				}
			case 'S', 'W':
				if inClass {
					return "", fmt.Errorf(`\%c inside a character class is not supported`, e)
				}
				out = "[^" + spaceRanges + "]"
				if e == 'W' {
					out = "[^" + wordRanges + "]"
				}
			default:
				out = re[i-1 : i+1]
			}
			b.WriteString(out)
			continue
		}
		switch {
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal.
			if i+1 < len(re) && re[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(re) && re[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
			continue
		case c == ']' && inClass:
			inClass = false
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}
