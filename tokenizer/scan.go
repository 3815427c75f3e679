package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written scanners for the two pre-tokenizer regexes that real
// byte-level BPE models ship and that Go's regexp cannot run, because they
// end in the look-ahead \s+(?!\S). Each scanner returns the length of the
// match that the regex (leftmost-first alternation, as Oniguruma runs it)
// finds at a position. Both regexes match some non-empty text at every
// position, so a text is split by matching again where the last match ended.

// Known pattern strings, as they appear in tokenizer.json files.
const (
	// patternLlama3 is the Llama 3 regex; with \p{N} in place of \p{N}{1,3}
	// it is Qwen2's.
	patternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternQwen2  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// patternGPT2 is GPT-2's regex, which the ByteLevel pre-tokenizer uses
	// when use_regex is true.
	patternGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// Character classes that the regexes distinguish. \s is Unicode's
// White_Space property (as in Rust's regex and Oniguruma); classNewline is
// the part of it that is \r or \n.
const (
	classOther   uint8 = iota // neither \s, \p{L} nor \p{N}
	classLetter               // \p{L}
	classNumber               // \p{N}
	classSpace                // \s other than \r and \n
	classNewline              // \r or \n
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for c := 0; c < utf8.RuneSelf; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			t[c] = classLetter
		case c >= '0' && c <= '9':
			t[c] = classNumber
		case c == '\r' || c == '\n':
			t[c] = classNewline
		case c == ' ' || (c >= '\t' && c <= '\f'):
			t[c] = classSpace
		}
	}
	return t
}()

// classAt decodes the character at s[i] and returns its width and class.
// An ill-formed byte counts as one character of classOther.
func classAt(s string, i int) (width int, class uint8) {
	if c := s[i]; c < utf8.RuneSelf {
		return 1, asciiClass[c]
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	switch {
	case unicode.IsLetter(r):
		return w, classLetter
	case unicode.IsNumber(r):
		return w, classNumber
	case isWhiteSpace(r):
		return w, classSpace
	}
	return w, classOther
}

// isWhiteSpace reports Unicode's White_Space property for non-ASCII runes.
func isWhiteSpace(r rune) bool {
	switch r {
	case 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// runOf returns the end of the run of characters of class c (or of either
// of c and c2) that starts at i.
func runOf(s string, i int, c, c2 uint8) int {
	for i < len(s) {
		w, k := classAt(s, i)
		if k != c && k != c2 {
			break
		}
		i += w
	}
	return i
}

// contraction returns the length of the contraction ('s 't 're 've 'm 'll
// 'd) at the start of s, which begins with an apostrophe, or 0. With fold
// set it matches without regard to case, as (?i:...) does: that includes
// the long s (U+017F), which folds to s.
func contraction(s string, fold bool) int {
	if len(s) < 2 || s[0] != '\'' {
		return 0
	}
	lower := func(c byte) byte {
		if fold && c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[1]) {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if len(s) >= 3 && lower(s[2]) == 'e' {
			return 3
		}
	case 'l':
		if len(s) >= 3 && lower(s[2]) == 'l' {
			return 3
		}
	case 0xC5: // U+017F is C5 BF
		if fold && len(s) >= 3 && s[2] == 0xBF {
			return 3
		}
	}
	return 0
}

// spaceMatch handles the alternatives that every whitespace character
// falls to: \s+(?!\S)|\s+. The run of whitespace from i ends at j; it
// gives up its last character to the next match when a non-space follows
// and more than one character is left.
func spaceMatch(s string, i, j int) int {
	if j == len(s) {
		return j - i
	}
	_, last := utf8.DecodeLastRuneInString(s[i:j])
	if j-last > i {
		return j - last - i
	}
	return j - i
}

// matchLlama3 returns the length of the Llama 3 regex's match at s[i:]; the
// number alternative takes at most maxDigits characters (3 for Llama 3, 1 for
// Qwen2).
func matchLlama3(s string, i, maxDigits int) int {
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if s[i] == '\'' {
		if n := contraction(s[i:], true); n > 0 {
			return n
		}
	}
	w, c := classAt(s, i)
	switch c {
	case classLetter:
		// [^\r\n\p{L}\p{N}]?\p{L}+ without its optional character.
		return runOf(s, i, classLetter, classLetter) - i
	case classNumber:
		// \p{N}{1,maxDigits}
		j := i
		for k := 0; k < maxDigits && j < len(s); k++ {
			w, c := classAt(s, j)
			if c != classNumber {
				break
			}
			j += w
		}
		return j - i
	}
	if c != classNewline && i+w < len(s) {
		// [^\r\n\p{L}\p{N}]?\p{L}+ with its optional character.
		if _, c2 := classAt(s, i+w); c2 == classLetter {
			return runOf(s, i+w, classLetter, classLetter) - i
		}
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	start := -1
	if c == classOther {
		start = i
	} else if s[i] == ' ' && i+1 < len(s) {
		if _, c2 := classAt(s, i+1); c2 == classOther {
			start = i + 1
		}
	}
	if start >= 0 {
		j := runOf(s, start, classOther, classOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j - i
	}
	// c is whitespace. \s*[\r\n]+ reaches the last \r or \n of the run.
	j, lastNL := i, -1
	for j < len(s) {
		w, c := classAt(s, j)
		if c != classSpace && c != classNewline {
			break
		}
		j += w
		if c == classNewline {
			lastNL = j
		}
	}
	if lastNL > 0 {
		return lastNL - i
	}
	return spaceMatch(s, i, j)
}

// matchGPT2 returns the length of GPT-2's regex's match at s[i:].
func matchGPT2(s string, i int) int {
	// 's|'t|'re|'ve|'m|'ll|'d
	if s[i] == '\'' {
		if n := contraction(s[i:], false); n > 0 {
			return n
		}
	}
	_, c := classAt(s, i)
	start := i
	if s[i] == ' ' && i+1 < len(s) {
		// The optional space of ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`.
		if _, c2 := classAt(s, i+1); c2 == classLetter || c2 == classNumber || c2 == classOther {
			start, c = i+1, c2
		}
	}
	switch c {
	case classLetter, classNumber, classOther:
		return runOf(s, start, c, c) - i
	}
	return spaceMatch(s, i, runOf(s, i, classSpace, classNewline))
}
