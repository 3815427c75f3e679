package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The block layouts below follow ggml's block structs (ggml-common.h); all
// multi-byte fields are little-endian, "half" is IEEE fp16. Each
// dequantizer evaluates the same float32 expressions in the same order as
// ggml's reference C (dequantize_row_* in ggml-quants.c), and rounds every
// product to float32 before adding, so results match it bit for bit
// wherever the C build does not fuse multiply-adds.

// FP16ToFloat32 converts an IEEE 754 half-precision value, given by its
// bits, to float32 exactly (subnormals, infinities and NaN included).
func FP16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0x1f: // infinity or NaN, payload kept
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0: // zero or subnormal: mant × 2^-24, exact in float32
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// BF16ToFloat32 converts a bfloat16 value, given by its bits, to float32
// exactly: bfloat16 is the top half of a float32.
func BF16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

func half(b []byte) float32 { return FP16ToFloat32(binary.LittleEndian.Uint16(b)) }

// blockFunc dequantizes one block of src into dst (one block's elements).
type blockFunc func(src []byte, dst []float32)

// dequantizers lists the supported types. DequantizeRow converts the plain
// types F32, F16 and BF16 in bulk rather than through their entries.
var dequantizers = map[Type]blockFunc{
	F32:  func(src []byte, dst []float32) { dst[0] = math.Float32frombits(binary.LittleEndian.Uint32(src)) },
	F16:  func(src []byte, dst []float32) { dst[0] = half(src) },
	BF16: func(src []byte, dst []float32) { dst[0] = BF16ToFloat32(binary.LittleEndian.Uint16(src)) },
	Q4_0: dequantQ4_0,
	Q4_1: dequantQ4_1,
	Q5_0: dequantQ5_0,
	Q5_1: dequantQ5_1,
	Q8_0: dequantQ8_0,
	Q8_1: dequantQ8_1,
	Q2_K: dequantQ2_K,
	Q3_K: dequantQ3_K,
	Q4_K: dequantQ4_K,
	Q5_K: dequantQ5_K,
	Q6_K: dequantQ6_K,
	Q8_K: dequantQ8_K,
}

// CanDequantize reports whether Dequantize and DequantizeRow support t.
// They support F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and the
// k-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
func CanDequantize(t Type) bool {
	_, ok := dequantizers[t]
	return ok
}

// Dequantize converts all of t's elements to float32 into dst, which must
// hold exactly t.Elements() values.
func Dequantize(t *Tensor, dst []float32) error {
	if n := t.Elements(); len(dst) != n {
		return fmt.Errorf("gguf: dequantize %q: dst has %d elements, the tensor %d", t.Name, len(dst), n)
	}
	if err := DequantizeRow(t.Type, t.Data, dst); err != nil {
		return fmt.Errorf("gguf: dequantize %q: %w", t.Name, err)
	}
	return nil
}

// DequantizeRow converts len(dst) consecutive elements of type typ, encoded
// in src, to float32. len(dst) must be a multiple of typ's block size and
// src exactly typ.RowBytes(len(dst)) bytes long. It is meant for one row
// (Dims[0] elements) of a tensor at a time, but any whole number of blocks
// works.
func DequantizeRow(typ Type, src []byte, dst []float32) error {
	fn, ok := dequantizers[typ]
	if !ok {
		if !typ.Known() {
			return fmt.Errorf("unknown ggml type %d", uint32(typ))
		}
		return fmt.Errorf("dequantizing %s is not supported", typ)
	}
	bs, ts := typ.BlockSize(), typ.TypeSize()
	if len(dst)%bs != 0 {
		return fmt.Errorf("%d elements is not a whole number of %s blocks of %d", len(dst), typ, bs)
	}
	if want := len(dst) / bs * ts; len(src) != want {
		return fmt.Errorf("src has %d bytes, %d elements of %s take %d", len(src), len(dst), typ, want)
	}
	switch typ { // the plain types, without a call per element
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
		return nil
	case F16:
		for i := range dst {
			dst[i] = half(src[2*i:])
		}
		return nil
	case BF16:
		for i := range dst {
			dst[i] = BF16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
		return nil
	}
	for i := 0; i < len(dst)/bs; i++ {
		fn(src[i*ts:(i+1)*ts], dst[i*bs:(i+1)*bs])
	}
	return nil
}

// Q4_0, 32 elements in 18 bytes: half d | qs[16]. Element j < 16 is the low
// nibble of qs[j], element j+16 its high nibble; value d·(q−8).
func dequantQ4_0(src []byte, dst []float32) {
	d := half(src)
	qs := src[2:18]
	for j := 0; j < 16; j++ {
		dst[j] = float32(int(qs[j]&0xf)-8) * d
		dst[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

// Q4_1, 32 elements in 20 bytes: half d | half m | qs[16], nibbles as in
// Q4_0; value d·q + m.
func dequantQ4_1(src []byte, dst []float32) {
	d, m := half(src), half(src[2:])
	qs := src[4:20]
	for j := 0; j < 16; j++ {
		dst[j] = float32(float32(qs[j]&0xf)*d) + m
		dst[j+16] = float32(float32(qs[j]>>4)*d) + m
	}
}

// Q5_0, 32 elements in 22 bytes: half d | qh u32 | qs[16]. Element j's
// fifth bit is bit j of qh; nibbles as in Q4_0; value d·(q−16).
func dequantQ5_0(src []byte, dst []float32) {
	d := half(src)
	qh := binary.LittleEndian.Uint32(src[2:])
	qs := src[6:22]
	for j := 0; j < 16; j++ {
		h0 := int(qh>>j&1) << 4
		h1 := int(qh>>(j+16)&1) << 4
		dst[j] = float32((int(qs[j]&0xf)|h0)-16) * d
		dst[j+16] = float32((int(qs[j]>>4)|h1)-16) * d
	}
}

// Q5_1, 32 elements in 24 bytes: half d | half m | qh u32 | qs[16], bits as
// in Q5_0; value d·q + m.
func dequantQ5_1(src []byte, dst []float32) {
	d, m := half(src), half(src[2:])
	qh := binary.LittleEndian.Uint32(src[4:])
	qs := src[8:24]
	for j := 0; j < 16; j++ {
		h0 := int(qh>>j&1) << 4
		h1 := int(qh>>(j+16)&1) << 4
		dst[j] = float32(float32(int(qs[j]&0xf)|h0)*d) + m
		dst[j+16] = float32(float32(int(qs[j]>>4)|h1)*d) + m
	}
}

// Q8_0, 32 elements in 34 bytes: half d | int8 qs[32]; value d·q.
func dequantQ8_0(src []byte, dst []float32) {
	d := half(src)
	for j, q := range src[2:34] {
		dst[j] = float32(int8(q)) * d
	}
}

// Q8_1, 32 elements in 36 bytes: half d | half s (= d·Σq, unused here) |
// int8 qs[32]; value d·q.
func dequantQ8_1(src []byte, dst []float32) {
	d := half(src)
	for j, q := range src[4:36] {
		dst[j] = float32(int8(q)) * d
	}
}

// Q2_K, 256 elements in 84 bytes: scales[16] | qs[64] | half d | half dmin.
// Sixteen sub-blocks of 16; scales[i] holds sub-block i's 4-bit scale (low
// nibble) and 4-bit min (high nibble). Each 128-element half uses 32 qs
// bytes: element 32k+l of the half (k = 0..3, l = 0..31) is bits 2k..2k+1
// of qs[l]. Value d·sc·q − dmin·m.
func dequantQ2_K(src []byte, dst []float32) {
	scales := src[0:16]
	d, dmin := half(src[80:]), half(src[82:])
	y := 0
	is := 0
	for n := 0; n < qk; n += 128 {
		q := src[16+n/4 : 16+n/4+32]
		for shift := 0; shift < 8; shift += 2 {
			for h := 0; h < 2; h++ {
				sc := scales[is]
				is++
				dl := d * float32(sc&0xf)
				ml := dmin * float32(sc>>4)
				for l := 0; l < 16; l++ {
					dst[y] = float32(dl*float32(q[16*h+l]>>shift&3)) - ml
					y++
				}
			}
		}
	}
}

// Q3_K, 256 elements in 110 bytes: hmask[32] | qs[64] | scales[12] | half d.
// Sixteen sub-blocks of 16, each with a 6-bit scale stored +32 (packed as
// unpackQ3Scales describes). The low 2 bits of each quant come from qs as
// in Q2_K; the third is bit k of hmask[l] for element 32k+l (k = 0..7), and
// a clear bit subtracts 4, so q is in −4..3. Value d·(sc−32)·q.
func dequantQ3_K(src []byte, dst []float32) {
	hm := src[0:32]
	d := half(src[108:])
	scales := unpackQ3Scales(src[96:108])
	y := 0
	is := 0
	m := uint8(1)
	for n := 0; n < qk; n += 128 {
		q := src[32+n/4 : 32+n/4+32]
		for shift := 0; shift < 8; shift += 2 {
			for h := 0; h < 2; h++ {
				dl := d * float32(int(scales[is])-32)
				is++
				for l := 16 * h; l < 16*h+16; l++ {
					v := int(q[l] >> shift & 3)
					if hm[l]&m == 0 {
						v -= 4
					}
					dst[y] = dl * float32(v)
					y++
				}
			}
			m <<= 1
		}
	}
}

// unpackQ3Scales expands Q3_K's 12 scale bytes into 16 6-bit values
// (biased by 32). For i < 8, scale i has its low 4 bits in the low nibble
// of byte i and scale i+8 in the high nibble of byte i; byte 8+k (k = 0..3)
// holds the top 2 bits of scales k, k+4, k+8, k+12 in its bit pairs 0, 2,
// 4, 6.
func unpackQ3Scales(b []byte) [16]uint8 {
	var s [16]uint8
	for i := 0; i < 16; i++ {
		lo := b[i%8] >> (4 * (i / 8)) & 0xf
		hi := b[8+i%4] >> (2 * (i / 4)) & 3
		s[i] = lo | hi<<4
	}
	return s
}

// scaleMinK4 returns the 6-bit scale and min of sub-block j (0..7) from the
// 12 packed scale bytes of Q4_K and Q5_K: for j < 4 the scale is the low 6
// bits of q[j] and the min the low 6 bits of q[j+4]; for j ≥ 4 the scale
// is the low nibble of q[j+4] with the top 2 bits of q[j−4] above it, and
// the min the high nibble of q[j+4] with the top 2 bits of q[j].
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | q[j-4]>>6<<4, q[j+4]>>4 | q[j]>>6<<4
}

// Q4_K, 256 elements in 144 bytes: half d | half dmin | scales[12] | qs[128].
// Eight sub-blocks of 32, each with a 6-bit scale and min (scaleMinK4).
// Each 64 elements use 32 qs bytes: the first 32 are the low nibbles,
// the next 32 the high nibbles. Value d·sc·q − dmin·m.
func dequantQ4_K(src []byte, dst []float32) {
	d, dmin := half(src), half(src[2:])
	scales := src[4:16]
	for j := 0; j < 4; j++ {
		q := src[16+32*j : 16+32*j+32]
		sc1, m1 := scaleMinK4(2*j, scales)
		sc2, m2 := scaleMinK4(2*j+1, scales)
		d1, min1 := d*float32(sc1), dmin*float32(m1)
		d2, min2 := d*float32(sc2), dmin*float32(m2)
		y := dst[64*j : 64*j+64]
		for l := 0; l < 32; l++ {
			y[l] = float32(d1*float32(q[l]&0xf)) - min1
			y[l+32] = float32(d2*float32(q[l]>>4)) - min2
		}
	}
}

// Q5_K, 256 elements in 176 bytes: half d | half dmin | scales[12] | qh[32] |
// qs[128]. Like Q4_K, plus a fifth bit: element 32k+l (k = 0..7) adds 16
// when bit k of qh[l] is set.
func dequantQ5_K(src []byte, dst []float32) {
	d, dmin := half(src), half(src[2:])
	scales := src[4:16]
	qh := src[16:48]
	for j := 0; j < 4; j++ {
		q := src[48+32*j : 48+32*j+32]
		sc1, m1 := scaleMinK4(2*j, scales)
		sc2, m2 := scaleMinK4(2*j+1, scales)
		d1, min1 := d*float32(sc1), dmin*float32(m1)
		d2, min2 := d*float32(sc2), dmin*float32(m2)
		u1, u2 := uint8(1)<<(2*j), uint8(2)<<(2*j)
		y := dst[64*j : 64*j+64]
		for l := 0; l < 32; l++ {
			v1, v2 := int(q[l]&0xf), int(q[l]>>4)
			if qh[l]&u1 != 0 {
				v1 += 16
			}
			if qh[l]&u2 != 0 {
				v2 += 16
			}
			y[l] = float32(d1*float32(v1)) - min1
			y[l+32] = float32(d2*float32(v2)) - min2
		}
	}
}

// Q6_K, 256 elements in 210 bytes: ql[128] | qh[64] | int8 scales[16] |
// half d. Each 128-element half uses 64 ql, 32 qh bytes and 8 scales; for
// l = 0..31 its elements l, l+32, l+64, l+96 take their low 4 bits from
// the low nibble of ql[l], low nibble of ql[l+32], high nibble of ql[l],
// high nibble of ql[l+32], and their high 2 bits from bit pairs 0, 2, 4, 6
// of qh[l]. Sub-block of 16 i has scale scales[i]. Value d·sc·(q−32).
func dequantQ6_K(src []byte, dst []float32) {
	d := half(src[208:])
	for n := 0; n < 2; n++ {
		ql := src[64*n : 64*n+64]
		qh := src[128+32*n : 128+32*n+32]
		sc := src[192+8*n : 192+8*n+8]
		y := dst[128*n : 128*n+128]
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
			q2 := int(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
			q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			y[l] = float32(d*float32(int8(sc[is]))) * float32(q1)
			y[l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
			y[l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
			y[l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
		}
	}
}

// Q8_K, 256 elements in 292 bytes: float32 d | int8 qs[256] | int16
// bsums[16] (sums of 16-element groups, unused here); value d·q.
func dequantQ8_K(src []byte, dst []float32) {
	d := math.Float32frombits(binary.LittleEndian.Uint32(src))
	for j, q := range src[4 : 4+qk] {
		dst[j] = d * float32(int8(q))
	}
}
