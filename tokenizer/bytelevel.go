package tokenizer

import "unicode/utf8"

// GPT-2's byte-level alphabet maps every byte to a printable rune, so that a
// vocabulary of strings can hold arbitrary bytes: the printable Latin-1 bytes
// stand for themselves and the 68 others are moved to U+0100 and up, in order.

var (
	byteToRune [256]rune
	runeToByte = make(map[rune]byte, 256)
	// byteToStr holds string(byteToRune[b]) to avoid building it per call.
	byteToStr [256]string
)

func init() {
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = next
			next++
		}
		byteToRune[b] = r
		runeToByte[r] = byte(b)
		byteToStr[b] = string(r)
	}
}

// byteLevelEncode maps raw bytes to their byte-level runes.
func byteLevelEncode(s string) string {
	buf := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		buf = utf8.AppendRune(buf, byteToRune[s[i]])
	}
	return string(buf)
}

// byteLevelDecode maps a token's byte-level runes back to bytes, as the
// ByteLevel decoder does: a token holding any rune outside the alphabet is
// kept as its own UTF-8 bytes.
func byteLevelDecode(tok string) []byte {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := runeToByte[r]
		if !ok {
			return []byte(tok)
		}
		out = append(out, b)
	}
	return out
}
