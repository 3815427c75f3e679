package kvcache

// Unrolled loops over 3- and 8-bit codes for dotCodes and axpyCodes
// (quant.go). 3-bit codes straddle bytes, so they are read 8 at a time
// from 3 bytes at once instead of one getCode each; 8-bit codes widen
// through a table rather than an integer conversion per code.

// lut8 widens an 8-bit code.
var lut8 = func() (a [256]float32) {
	for v := range a {
		a[v] = float32(v)
	}
	return a
}()

// word3 returns the 24 bits holding 3-bit codes c…c+7 (c a multiple of 8).
func word3(row []byte, c int) uint32 {
	b := row[c/8*3 : c/8*3+3 : c/8*3+3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
}

// dot3 returns Σ w[c]·code_c over the first len(w) &^ 7 codes of a packed
// 3-bit row, and how many codes that is.
func dot3(w []float32, row []byte) (float32, int) {
	var s0, s1, s2, s3 float32
	c := 0
	for ; c+8 <= len(w); c += 8 {
		x, v := word3(row, c), w[c:c+8:c+8]
		s0 += v[0]*lut8[x&7] + v[4]*lut8[x>>12&7]
		s1 += v[1]*lut8[x>>3&7] + v[5]*lut8[x>>15&7]
		s2 += v[2]*lut8[x>>6&7] + v[6]*lut8[x>>18&7]
		s3 += v[3]*lut8[x>>9&7] + v[7]*lut8[x>>21&7]
	}
	return (s0 + s1) + (s2 + s3), c
}

// axpy3 adds a·code_c to out[c] over the first len(out) &^ 7 codes of a
// packed 3-bit row, and returns how many codes that is.
func axpy3(out []float32, a float32, row []byte) int {
	c := 0
	for ; c+8 <= len(out); c += 8 {
		x, o := word3(row, c), out[c:c+8:c+8]
		o[0] += a * lut8[x&7]
		o[1] += a * lut8[x>>3&7]
		o[2] += a * lut8[x>>6&7]
		o[3] += a * lut8[x>>9&7]
		o[4] += a * lut8[x>>12&7]
		o[5] += a * lut8[x>>15&7]
		o[6] += a * lut8[x>>18&7]
		o[7] += a * lut8[x>>21&7]
	}
	return c
}
