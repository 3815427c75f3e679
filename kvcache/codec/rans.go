package codec

import (
	"errors"
	"fmt"
)

// A byte-wise rANS coder (Duda, "Asymmetric numeral systems", arXiv:1311.2540)
// over a static table of symbol frequencies that sum to 1<<probBits. The
// encoder runs over the symbols backwards and the decoder forwards, with a
// 32-bit state renormalised a byte at a time.

const (
	probBits  = 12
	probScale = 1 << probBits
	ransLow   = 1 << 23 // the state's lower bound while coding
	alphabet  = 256     // symbols are bytes
)

// freqTable is a static model: freq[s] > 0 for every symbol that occurs,
// cum[s] the sum of the frequencies below s, and slot the symbol of each of
// the probScale slots (for decoding).
type freqTable struct {
	freq [alphabet]uint32
	cum  [alphabet + 1]uint32
	slot []uint8
}

// newFreqTable scales counts to sum to probScale, keeping every symbol that
// occurs at a frequency of at least 1.
func newFreqTable(counts *[alphabet]uint64) *freqTable {
	var total uint64
	used := 0
	for _, c := range counts {
		total += c
		if c > 0 {
			used++
		}
	}
	t := &freqTable{}
	if total == 0 {
		return t
	}
	var sum uint32
	best := 0
	for s, c := range counts {
		if c == 0 {
			continue
		}
		f := uint32(uint64(probScale) * c / total)
		if f == 0 {
			f = 1
		}
		t.freq[s] = f
		sum += f
		if c > counts[best] {
			best = s
		}
	}
	// Give or take the difference from the largest symbols, never below 1.
	for sum != probScale {
		if sum < probScale {
			t.freq[best] += probScale - sum
			sum = probScale
			break
		}
		over := sum - probScale
		// take from the largest frequency that can spare it
		big := -1
		for s := range t.freq {
			if t.freq[s] > 1 && (big < 0 || t.freq[s] > t.freq[big]) {
				big = s
			}
		}
		take := min(over, t.freq[big]-1)
		t.freq[big] -= take
		sum -= take
	}
	t.finish()
	return t
}

// finish fills cum and slot from freq.
func (t *freqTable) finish() {
	t.slot = make([]uint8, probScale)
	var c uint32
	for s := range alphabet {
		t.cum[s] = c
		for j := c; j < c+t.freq[s]; j++ {
			t.slot[j] = uint8(s)
		}
		c += t.freq[s]
	}
	t.cum[alphabet] = c
}

// appendTable writes the table compactly: the number of symbols up to the
// last one used, then each frequency as a varint.
func (t *freqTable) appendTo(dst []byte) []byte {
	n := 0
	for s := range alphabet {
		if t.freq[s] > 0 {
			n = s + 1
		}
	}
	dst = appendUvarint(dst, uint64(n))
	for s := range n {
		dst = appendUvarint(dst, uint64(t.freq[s]))
	}
	return dst
}

// readFreqTable reads what appendTo wrote and checks that the frequencies
// sum to probScale.
func readFreqTable(r *reader) (*freqTable, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > alphabet {
		return nil, fmt.Errorf("frequency table of %d symbols, more than %d", n, alphabet)
	}
	t := &freqTable{}
	var sum uint64
	for s := range int(n) {
		f, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		if f > probScale {
			return nil, errors.New("frequency above the table's scale")
		}
		t.freq[s] = uint32(f)
		sum += f
	}
	if sum != probScale {
		return nil, fmt.Errorf("frequencies sum to %d, not %d", sum, probScale)
	}
	t.finish()
	return t, nil
}

// ransEncode appends the rANS code of syms under t to dst. Every symbol
// must have a non-zero frequency in t.
func ransEncode(dst []byte, syms []uint8, t *freqTable) []byte {
	// Bytes come out last-first; collect them, then reverse into dst.
	out := make([]byte, 0, len(syms)/2+8)
	x := uint32(ransLow)
	for i := len(syms) - 1; i >= 0; i-- {
		s := syms[i]
		f := t.freq[s]
		xMax := ((ransLow >> probBits) << 8) * f
		for x >= xMax {
			out = append(out, byte(x))
			x >>= 8
		}
		x = (x/f)<<probBits + x%f + t.cum[s]
	}
	out = append(out, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
	dst = appendUvarint(dst, uint64(len(out)))
	for i := len(out) - 1; i >= 0; i-- {
		dst = append(dst, out[i])
	}
	return dst
}

// ransDecode fills syms from the code that ransEncode wrote under t.
func ransDecode(r *reader, syms []uint8, t *freqTable) error {
	n, err := r.uvarint()
	if err != nil {
		return err
	}
	code, err := r.bytes(n)
	if err != nil {
		return err
	}
	if len(code) < 4 {
		return errors.New("rANS code shorter than its state")
	}
	x := uint32(code[0])<<24 | uint32(code[1])<<16 | uint32(code[2])<<8 | uint32(code[3])
	p := 4
	for i := range syms {
		sl := x & (probScale - 1)
		s := t.slot[sl]
		syms[i] = s
		x = t.freq[s]*(x>>probBits) + sl - t.cum[s]
		for x < ransLow {
			if p >= len(code) {
				return errors.New("rANS code ends early")
			}
			x = x<<8 | uint32(code[p])
			p++
		}
	}
	if x != ransLow || p != len(code) {
		return errors.New("rANS code does not end where its symbols do")
	}
	return nil
}
