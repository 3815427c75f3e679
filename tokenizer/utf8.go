package tokenizer

import "unicode/utf8"

// invalidPrefix measures the ill-formed sequence at the start of p, which
// must not begin with a valid character. It returns the length of its
// maximal subpart (the longest prefix that could still begin a valid
// character, at least one byte) and whether that prefix runs to the end of
// p, so that more bytes might still complete it.
//
// Replacing each maximal subpart by one U+FFFD is what Unicode recommends
// and what Rust's String::from_utf8_lossy does; Go's own decoder would
// replace every byte instead.
func invalidPrefix(p []byte) (n int, open bool) {
	need, lo, hi := 0, byte(0x80), byte(0xBF)
	switch b := p[0]; {
	case b >= 0xC2 && b <= 0xDF:
		need = 1
	case b == 0xE0:
		need, lo = 2, 0xA0
	case b == 0xED:
		need, hi = 2, 0x9F
	case b >= 0xE1 && b <= 0xEF:
		need = 2
	case b == 0xF0:
		need, lo = 3, 0x90
	case b == 0xF4:
		need, hi = 3, 0x8F
	case b >= 0xF1 && b <= 0xF3:
		need = 3
	default:
		return 1, false
	}
	n = 1
	for j := 1; j <= need; j++ {
		if j >= len(p) {
			return n, true
		}
		if p[j] < lo || p[j] > hi {
			return n, false
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n, false
}

// appendValid appends to dst the characters of p, with U+FFFD for each
// maximal ill-formed subpart. If final is false, an incomplete character at
// the end of p is left undecoded and its start is returned as rest;
// otherwise rest is len(p).
func appendValid(dst, p []byte, final bool) (out []byte, rest int) {
	i := 0
	for i < len(p) {
		if p[i] < utf8.RuneSelf {
			dst = append(dst, p[i])
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, p[i:i+size]...)
			i += size
			continue
		}
		n, open := invalidPrefix(p[i:])
		if open && !final {
			return dst, i
		}
		dst = append(dst, "\uFFFD"...)
		i += n
	}
	return dst, i
}

// lossyString converts b to a string, replacing ill-formed sequences with
// U+FFFD as String::from_utf8_lossy does.
func lossyString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out, _ := appendValid(make([]byte, 0, len(b)+8), b, true)
	return string(out)
}
