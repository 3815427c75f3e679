package compute

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Q4 layout, kvserve's own 4-bit format (not a ggml type). Each block of
// Q4Block consecutive elements of a row takes Q4BlockBytes bytes:
//
//	bytes 0–3    scale s, a little-endian float32
//	bytes 4–7    offset m, a little-endian float32
//	bytes 8–23   codes: byte j holds element j's 4-bit code in its low
//	             nibble and element j+16's in its high nibble
//
// and element i, with code q in 0…15, is float32(s·q) + m: the product
// rounded to float32, then the sum. That is 6 bits a weight, against 4.5
// for ggml's Q4_0 and Q4_K and 8.5 for Q8_0; the float32 scale and offset
// are what lets Q4_0, Q4_1 and Q4_K convert without changing a value (see
// Q4FromGGML).
const (
	Q4Block      = 32 // elements per Q4 block
	Q4BlockBytes = 24 // bytes per Q4 block
)

// Q4RowBytes returns the bytes of one Q4 row of cols elements, cols a
// multiple of Q4Block.
func Q4RowBytes(cols int) int { return cols / Q4Block * Q4BlockBytes }

// NewQ4 returns a rows × cols Q4 matrix over raw, the blocks of its rows in
// order (see Q4Block). cols must be a multiple of 32 and raw exactly
// rows·cols/32·24 bytes long. The matrix keeps raw, without copying.
func NewQ4(rows, cols int, raw []byte) (*Mat, error) {
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("compute: Q4 matrix of %d × %d", rows, cols)
	}
	if cols%Q4Block != 0 {
		return nil, fmt.Errorf("compute: Q4 matrix of %d columns: not a multiple of %d", cols, Q4Block)
	}
	if want := rows * Q4RowBytes(cols); len(raw) != want {
		return nil, fmt.Errorf("compute: Q4 matrix of %d × %d needs %d bytes, got %d", rows, cols, want, len(raw))
	}
	return &Mat{Rows: rows, Cols: cols, DType: Q4, Q4: raw}, nil
}

// GGMLQ4 names a ggml block type that Q4FromGGML converts.
type GGMLQ4 uint8

// The ggml types with an exact Q4 form. Their layouts, from ggml's
// ggml-common.h (block_q4_0, block_q4_1, block_q4_K); "half" is IEEE fp16
// and every field is little-endian:
//
//	Q4_0  32 elements in 18 bytes: half d | qs[16]; element j < 16 is the
//	      low nibble of qs[j], element j+16 its high nibble; value d·(q−8).
//	Q4_1  32 elements in 20 bytes: half d | half m | qs[16], nibbles as in
//	      Q4_0; value float32(d·q) + m.
//	Q4_K  256 elements in 144 bytes: half d | half dmin | scales[12] |
//	      qs[128]: eight sub-blocks of 32, each with a 6-bit scale sc and
//	      min mn packed in scales (see q4kScaleMin); sub-blocks 2k and 2k+1
//	      are the low and high nibbles of qs[32k:32k+32]; value
//	      float32((d·sc)·q) − dmin·mn.
const (
	GGMLQ4_0 GGMLQ4 = iota
	GGMLQ4_1
	GGMLQ4_K
)

// String returns ggml's name of the type, such as "Q4_K".
func (t GGMLQ4) String() string {
	switch t {
	case GGMLQ4_0:
		return "Q4_0"
	case GGMLQ4_1:
		return "Q4_1"
	case GGMLQ4_K:
		return "Q4_K"
	}
	return fmt.Sprintf("ggml4(%d)", t)
}

// block returns the elements and bytes of one ggml block of t.
func (t GGMLQ4) block() (elems, bytes int) {
	switch t {
	case GGMLQ4_0:
		return 32, 18
	case GGMLQ4_1:
		return 32, 20
	case GGMLQ4_K:
		return 256, 144
	}
	return 0, 0
}

// Q4FromGGML converts consecutive ggml blocks of type t in src to Q4 blocks
// in dst, which must be exactly Q4RowBytes of the elements src holds. The
// values are unchanged wherever the ggml scales are finite: ggml's own
// dequantization and Q4's give the same float32 for every element, except
// that a Q4_0 zero may change sign (d·(8−8) is ±0 by d's sign, s·8 − 8s is
// +0). Why, per type:
//
//   - Q4_0: s = d and m = −8d. d has 11 significant bits, so s·q and
//     d·(q−8) are exact in float32, and so is their difference from m.
//   - Q4_1: s = d and m = m, the very expression ggml evaluates.
//   - Q4_K: sub-block k gets s = d·sc_k and m = −(dmin·mn_k). The products
//     of an 11-bit half and a 6-bit integer are exact in float32, so s and
//     m are ggml's own sub-block scale and min, and float32(s·q) + m is
//     ggml's float32(s·q) − min.
func Q4FromGGML(t GGMLQ4, dst, src []byte) error {
	be, bb := t.block()
	if be == 0 {
		return fmt.Errorf("compute: Q4FromGGML: unknown type %v", t)
	}
	if len(src)%bb != 0 {
		return fmt.Errorf("compute: Q4FromGGML: %d bytes is not a whole number of %v blocks of %d", len(src), t, bb)
	}
	nb := len(src) / bb
	if want := nb * be / Q4Block * Q4BlockBytes; len(dst) != want {
		return fmt.Errorf("compute: Q4FromGGML: %d %v blocks need %d bytes, dst has %d", nb, t, want, len(dst))
	}
	for b := range nb {
		blk, out := src[b*bb:(b+1)*bb], dst[b*be/Q4Block*Q4BlockBytes:]
		switch t {
		case GGMLQ4_0:
			d := f16At(blk)
			putQ4Block(out, d, -8*d)
			copy(out[8:24], blk[2:18])
		case GGMLQ4_1:
			putQ4Block(out, f16At(blk), f16At(blk[2:]))
			copy(out[8:24], blk[4:20])
		case GGMLQ4_K:
			d, dmin := f16At(blk), f16At(blk[2:])
			for k := range 8 {
				sc, mn := q4kScaleMin(k, blk[4:16])
				o := out[k*Q4BlockBytes : (k+1)*Q4BlockBytes]
				putQ4Block(o, d*float32(sc), -(dmin * float32(mn)))
				qs, shift := blk[16+32*(k/2):][:32], 4*uint(k%2)
				for j := range 16 {
					o[8+j] = qs[j]>>shift&15 | (qs[j+16]>>shift&15)<<4
				}
			}
		}
	}
	return nil
}

// q4kScaleMin unpacks sub-block k's (0…7) 6-bit scale and min from the 12
// scale bytes of a Q4_K block (ggml's get_scale_min_k4): for k < 4 they are
// the low 6 bits of q[k] and q[k+4]; for k ≥ 4 the scale is the low nibble
// of q[k+4] under the top 2 bits of q[k−4], the min the high nibble of
// q[k+4] under the top 2 bits of q[k].
func q4kScaleMin(k int, q []byte) (sc, mn uint8) {
	if k < 4 {
		return q[k] & 63, q[k+4] & 63
	}
	return q[k+4]&15 | q[k-4]>>6<<4, q[k+4]>>4 | q[k]>>6<<4
}

func f16At(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

// putQ4Block writes a Q4 block's scale and offset.
func putQ4Block(b []byte, s, m float32) {
	binary.LittleEndian.PutUint32(b, math.Float32bits(s))
	binary.LittleEndian.PutUint32(b[4:], math.Float32bits(m))
}

// q4Params returns the scale and offset of the Q4 block starting at b[0].
func q4Params(b []byte) (s, m float32) {
	_ = b[7]
	return math.Float32frombits(binary.LittleEndian.Uint32(b)), math.Float32frombits(binary.LittleEndian.Uint32(b[4:]))
}

func q4ToF32Generic(dst []float32, src []byte) {
	nb := len(dst) / Q4Block
	src = src[:nb*Q4BlockBytes]
	for b := range nb {
		blk := src[b*Q4BlockBytes : (b+1)*Q4BlockBytes]
		s, m := q4Params(blk)
		out := dst[b*Q4Block : (b+1)*Q4Block]
		for j, c := range blk[8:24] {
			// The conversions keep the compiler from fusing into an FMA:
			// the format rounds the product, then the sum.
			out[j] = float32(s*float32(c&15)) + m
			out[j+16] = float32(s*float32(c>>4)) + m
		}
	}
}

// dotQ4Generic splits each block's sum as s·Σ q_i·x_i + m·Σ x_i.
func dotQ4Generic(d []float32, w []byte, x []float32, k int) {
	rb := Q4RowBytes(k)
	w, x = w[:len(d)*rb], x[:k]
	for r := range d {
		row := w[r*rb : (r+1)*rb]
		var sum float32
		for b := 0; b < len(row); b += Q4BlockBytes {
			blk := row[b : b+Q4BlockBytes]
			s, m := q4Params(blk)
			xb := x[b/Q4BlockBytes*Q4Block:][:Q4Block]
			var q0, q1, x0, x1 float32
			for j, c := range blk[8:24] {
				q0 += float32(c&15) * xb[j]
				q1 += float32(c>>4) * xb[j+16]
				x0 += xb[j]
				x1 += xb[j+16]
			}
			sum += s*(q0+q1) + m*(x0+x1)
		}
		d[r] = sum
	}
}
