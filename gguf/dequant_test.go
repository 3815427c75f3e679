package gguf

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// fp16 constants used in the hand-built blocks.
const (
	h0_5 = 0x3800
	h1   = 0x3c00
	h2   = 0x4000
	hm1  = 0xbc00
)

func putHalf(b []byte, h uint16) { binary.LittleEndian.PutUint16(b, h) }

// TestDequantizeHandBuilt decodes blocks whose bytes are set by hand from
// the layout description; the expected values are worked out in the
// comments, independently of the decoder.
func TestDequantizeHandBuilt(t *testing.T) {
	type block struct {
		typ  Type
		make func(b []byte)
		want map[int]float32 // element index → value
	}
	for _, tc := range []struct {
		name string
		block
	}{
		{"Q8_0", block{Q8_0, func(b []byte) {
			putHalf(b, h0_5)
			b[2], b[3], b[4], b[5], b[33] = 0x80, 0xff, 0, 1, 127 // -128, -1, 0, 1, 127
		}, map[int]float32{0: -64, 1: -0.5, 2: 0, 3: 0.5, 31: 63.5}}},

		{"Q4_0", block{Q4_0, func(b []byte) {
			putHalf(b, h2)
			b[2] = 0x1f  // element 0 = 15, element 16 = 1
			b[17] = 0x80 // element 15 = 0, element 31 = 8
		}, map[int]float32{0: (15 - 8) * 2, 16: (1 - 8) * 2, 15: (0 - 8) * 2, 31: 0, 1: -16}}},

		{"Q4_1", block{Q4_1, func(b []byte) {
			putHalf(b, h1)
			putHalf(b[2:], hm1)
			b[4+3] = 0xa5 // element 3 = 5, element 19 = 10
		}, map[int]float32{3: 5 - 1, 19: 10 - 1, 0: -1}}},

		{"Q5_0", block{Q5_0, func(b []byte) {
			putHalf(b, h1)
			binary.LittleEndian.PutUint32(b[2:], 1|1<<16|1<<31) // fifth bits of elements 0, 16, 31
			b[6] = 0x21                                         // element 0 = 1|16, element 16 = 2|16
			b[6+15] = 0xf0                                      // element 15 = 0, element 31 = 15|16
		}, map[int]float32{0: 17 - 16, 16: 18 - 16, 1: -16, 15: -16, 31: 31 - 16}}},

		{"Q5_1", block{Q5_1, func(b []byte) {
			putHalf(b, h0_5)
			putHalf(b[2:], h2)
			binary.LittleEndian.PutUint32(b[4:], 1<<5) // fifth bit of element 5
			b[8+5] = 0x3c                              // element 5 = 12|16, element 21 = 3
		}, map[int]float32{5: 28*0.5 + 2, 21: 3*0.5 + 2, 0: 2}}},

		// Q2_K: scales[16] | qs[64] | d | dmin, with d = 1, dmin = 0.5.
		// Sub-block s (16 elements) uses scales[s]: low nibble scale, high
		// nibble min. In each 128-element half, element 32k+l takes bits 2k
		// of qs[half·32 + l].
		{"Q2_K", block{Q2_K, func(b []byte) {
			putHalf(b[80:], h1)
			putHalf(b[82:], h0_5)
			b[0] = 0x21  // sub-block 0: scale 1, min 2
			b[1] = 0x03  // sub-block 1: scale 3, min 0
			b[2] = 0x15  // sub-block 2: scale 5, min 1
			b[4] = 0x12  // sub-block 4: scale 2, min 1
			b[6] = 0x01  // sub-block 6: scale 1, min 0
			b[8] = 0xf7  // sub-block 8: scale 7, min 15
			b[15] = 0x0a // sub-block 15: scale 10, min 0
			qs := b[16:80]
			qs[0] = 0xe4  // bit pairs 0,1,2,3 → elements 0, 32, 64, 96 get 0, 1, 2, 3
			qs[16] = 0x03 // element 16 gets 3
			qs[32] = 0x02 // element 128 gets 2
			qs[63] = 0x40 // element 255 (second half, k=3, l=31) gets 1
		}, map[int]float32{
			0:   1*0 - 0.5*2,
			32:  5*1 - 0.5*1,
			64:  2*2 - 0.5*1,
			96:  1 * 3,
			16:  3 * 3,
			128: 7*2 - 0.5*15,
			255: 10 * 1,
			1:   -1, // q = 0 in sub-block 0
		}}},

		// Q3_K: hmask[32] | qs[64] | scales[12] | d, with d = 1. Scale i
		// (6 bits, stored +32): low nibble in byte i%8 (high nibble for
		// i ≥ 8), top 2 bits in byte 8+i%4 at bit 2·(i/4). Element 32k+l of a
		// half takes bits 2k of qs[half·32+l]; bit (4·half + k) of hmask[l]
		// clear means −4.
		{"Q3_K", block{Q3_K, func(b []byte) {
			putHalf(b[108:], h1)
			sc := b[96:108]
			sc[0] = 0xf2  // scale 0 low nibble 2, scale 8 low nibble 15
			sc[8] = 0x12  // scale 0 top bits 2 (→ 34 = +2), scale 8 top bits 1 (→ 31 = −1)
			sc[7] = 0xf0  // scale 15 low nibble 15
			sc[11] = 0xc0 // scale 15 top bits 3 (→ 63 = +31); scales 3, 7, 11 stay 0 (−32)
			qs := b[32:96]
			hm := b[0:32]
			qs[0], hm[0] = 0x01, 0x01|0x10 // element 0: q=1, no −4; element 128's high bit set too
			hm[2] = 0x01                   // element 2: q=0, no −4
			qs[32] = 0x03                  // element 128: q=3 (high bit set above)
			qs[16] = 0x30                  // element 80 (k=2, l=16): q=3, high bit clear → −1
			qs[63], hm[31] = 0x80, 0x80    // element 255 (second half, k=3, l=31): q=2, bit 7 set
		}, map[int]float32{
			0:   2 * 1,
			1:   2 * -4, // q=0, hmask clear
			2:   0,
			128: -1 * 3,
			80:  -32 * -1, // sub-block 5: scale 0 → −32
			255: 31 * 2,
		}}},

		// Q4_K: d | dmin | scales[12] | qs[128], with d = 1, dmin = 0.5.
		// Sub-block j < 4: scale = scales[j]&63, min = scales[j+4]&63;
		// j ≥ 4: scale = scales[j+4]&15 | (scales[j-4]>>6)<<4, min =
		// scales[j+4]>>4 | (scales[j]>>6)<<4. Each 64 elements read 32 qs
		// bytes, low nibbles first.
		{"Q4_K", block{Q4_K, func(b []byte) {
			putHalf(b, h1)
			putHalf(b[2:], h0_5)
			sc := b[4:16]
			sc[0] = 10       // sub-block 0 scale 10
			sc[4] = 3        // sub-block 0 min 3
			sc[1] = 0xc0 | 2 // sub-block 1 scale 2; top bits 3 → sub-block 5 scale high bits
			sc[5] = 0x80 | 1 // sub-block 1 min 1; top bits 2 → sub-block 5 min high bits
			sc[9] = 0x75     // sub-block 5: scale low 5, min low 7 → scale 53, min 39
			sc[11] = 0x9f    // sub-block 7: scale 15, min 9
			qs := b[16:144]
			qs[0] = 0xf7   // element 0 = 7, element 32 = 15
			qs[64] = 0x0c  // element 128 (sub-block 4: scale 0, min 0) = 12
			qs[65] = 0x40  // element 161 (sub-block 5) = 4
			qs[127] = 0x20 // element 255 (sub-block 7) = 2
		}, map[int]float32{
			0:   10*7 - 0.5*3,
			32:  2*15 - 0.5*1,
			128: 0,
			161: 53*4 - 0.5*39,
			255: 15*2 - 0.5*9,
			1:   -1.5,
		}}},

		// Q5_K: d | dmin | scales[12] | qh[32] | qs[128]; scales and nibbles
		// as Q4_K, and bit k of qh[l] adds 16 to element 32k+l.
		{"Q5_K", block{Q5_K, func(b []byte) {
			putHalf(b, h1)
			putHalf(b[2:], h0_5)
			sc := b[4:16]
			sc[0], sc[4], sc[1], sc[5], sc[9], sc[11] = 10, 3, 0xc0|2, 0x80|1, 0x75, 0x9f
			qh := b[16:48]
			qh[0] = 0x83 // elements 0, 32, 224
			qh[1] = 0x20 // element 161
			qs := b[48:176]
			qs[0], qs[65], qs[127] = 0xf7, 0x40, 0x20
		}, map[int]float32{
			0:   10*(7+16) - 0.5*3,
			32:  2*(15+16) - 0.5*1,
			161: 53*(4+16) - 0.5*39,
			224: 15*16 - 0.5*9,
			255: 15*2 - 0.5*9,
		}}},

		// Q6_K: ql[128] | qh[64] | scales[16] | d, with d = 0.5. Element
		// 128n + 32g + l: low 4 bits from ql[64n + l + 32(g%2)] (low nibble
		// for g < 2, high otherwise), high 2 bits from qh[32n + l] bits 2g;
		// scale scales[element/16]; value d·scale·(q−32).
		{"Q6_K", block{Q6_K, func(b []byte) {
			putHalf(b[208:], h0_5)
			ql, qh, sc := b[0:128], b[128:192], b[192:208]
			ql[0], qh[0], sc[0] = 0x05, 0x02, 0xfd     // element 0: 5 | 2<<4 = 37; scale −3
			sc[2] = 4                                  // element 33: q = 0
			ql[6], qh[6], sc[4] = 0xf0, 0x30, 127      // element 70 (g=2, l=6): 15 | 3<<4 = 63
			ql[127], qh[63], sc[15] = 0x10, 0x40, 0x80 // element 255: 1 | 1<<4 = 17; scale −128
			sc[9] = 1                                  // element 144: q = 0
		}, map[int]float32{
			0:   0.5 * -3 * (37 - 32),
			33:  0.5 * 4 * -32,
			70:  0.5 * 127 * (63 - 32),
			255: 0.5 * -128 * (17 - 32),
			144: 0.5 * 1 * -32,
		}}},

		{"Q8_K", block{Q8_K, func(b []byte) {
			binary.LittleEndian.PutUint32(b, math.Float32bits(0.25))
			b[4], b[4+255] = 0x80, 127
			b[260] = 0xff // bsums: ignored
		}, map[int]float32{0: -32, 255: 31.75, 1: 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := make([]byte, tc.typ.TypeSize())
			tc.make(src)
			dst := make([]float32, tc.typ.BlockSize())
			if err := DequantizeRow(tc.typ, src, dst); err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.want {
				if dst[i] != want {
					t.Errorf("element %d = %v, want %v", i, dst[i], want)
				}
			}
		})
	}
}

// ---- Encoders from logical fields ----------------------------------------
//
// Each encoder packs random quants and scales into a block following the
// layout description, and computes the expected values from the logical
// fields with the same float32 operations as ggml's reference.

func randHalf(r *rand.Rand) uint16 {
	// A finite fp16 of moderate size, either sign.
	return uint16(r.IntN(0x5800)) | uint16(r.IntN(2))<<15
}

type encoded struct {
	src  []byte
	want []float32
}

// setNibble stores v in the low (hi=false) or high nibble of b.
func setNibble(b *byte, v int, hi bool) {
	if hi {
		*b = *b&0x0f | byte(v)<<4
	} else {
		*b = *b&0xf0 | byte(v)
	}
}

func encodeLegacy(r *rand.Rand, typ Type) encoded {
	b := make([]byte, typ.TypeSize())
	want := make([]float32, 32)
	d := randHalf(r)
	putHalf(b, d)
	df := FP16ToFloat32(d)
	switch typ {
	case Q8_0:
		for i := 0; i < 32; i++ {
			q := r.IntN(256) - 128
			b[2+i] = byte(int8(q))
			want[i] = float32(q) * df
		}
	case Q4_0, Q4_1:
		var mf float32
		qs := b[2:]
		if typ == Q4_1 {
			m := randHalf(r)
			putHalf(b[2:], m)
			mf = FP16ToFloat32(m)
			qs = b[4:]
		}
		for i := 0; i < 32; i++ {
			q := r.IntN(16)
			setNibble(&qs[i%16], q, i >= 16)
			if typ == Q4_0 {
				want[i] = float32(q-8) * df
			} else {
				want[i] = float32(float32(q)*df) + mf
			}
		}
	case Q5_0, Q5_1:
		var mf float32
		off := 2
		if typ == Q5_1 {
			m := randHalf(r)
			putHalf(b[2:], m)
			mf = FP16ToFloat32(m)
			off = 4
		}
		var qh uint32
		qs := b[off+4:]
		for i := 0; i < 32; i++ {
			q := r.IntN(32)
			setNibble(&qs[i%16], q&15, i >= 16)
			qh |= uint32(q>>4) << i
			if typ == Q5_0 {
				want[i] = float32(q-16) * df
			} else {
				want[i] = float32(float32(q)*df) + mf
			}
		}
		binary.LittleEndian.PutUint32(b[off:], qh)
	}
	return encoded{b, want}
}

// packScaleMinK4 stores the 6-bit scale and min of sub-block j (0..7) in
// the 12 scale bytes of Q4_K/Q5_K.
func packScaleMinK4(s []byte, j int, sc, m uint8) {
	if j < 4 {
		s[j] = s[j]&0xc0 | sc
		s[j+4] = s[j+4]&0xc0 | m
		return
	}
	s[j+4] = sc&15 | (m&15)<<4
	s[j-4] = s[j-4]&0x3f | sc>>4<<6
	s[j] = s[j]&0x3f | m>>4<<6
}

func encodeK(r *rand.Rand, typ Type) encoded {
	b := make([]byte, typ.TypeSize())
	want := make([]float32, 256)
	switch typ {
	case Q4_K, Q5_K:
		d, dmin := randHalf(r), randHalf(r)
		putHalf(b, d)
		putHalf(b[2:], dmin)
		df, dminf := FP16ToFloat32(d), FP16ToFloat32(dmin)
		var scs, ms [8]uint8
		for j := range 8 {
			scs[j], ms[j] = uint8(r.IntN(64)), uint8(r.IntN(64))
		}
		for j := range 8 { // after all are drawn: packing shares bytes
			packScaleMinK4(b[4:16], j, scs[j], ms[j])
		}
		qs := b[16:]
		if typ == Q5_K {
			qs = b[48:]
		}
		for i := 0; i < 256; i++ {
			sub := i / 32 // sub-block of 32
			l := i % 32
			q := r.IntN(16)
			if typ == Q5_K {
				q = r.IntN(32)
				if q >= 16 {
					b[16+l] |= 1 << sub
				}
			}
			// Chunk of 64 = sub/2: low nibbles for even sub-blocks.
			setNibble(&qs[32*(sub/2)+l], q&15, sub%2 == 1)
			want[i] = float32(float32(df*float32(scs[sub]))*float32(q)) - float32(dminf*float32(ms[sub]))
		}
	case Q6_K:
		d := randHalf(r)
		putHalf(b[208:], d)
		df := FP16ToFloat32(d)
		var sc [16]int8
		for s := range sc {
			sc[s] = int8(r.IntN(256) - 128)
			b[192+s] = byte(sc[s])
		}
		for i := 0; i < 256; i++ {
			n, g, l := i/128, i%128/32, i%32
			q := r.IntN(64)
			setNibble(&b[64*n+l+32*(g%2)], q&15, g >= 2)
			b[128+32*n+l] |= byte(q>>4) << (2 * g)
			want[i] = float32(df*float32(sc[i/16])) * float32(q-32)
		}
	case Q2_K, Q3_K:
		var df, dminf float32
		var sc, m [16]int
		if typ == Q2_K {
			d, dmin := randHalf(r), randHalf(r)
			putHalf(b[80:], d)
			putHalf(b[82:], dmin)
			df, dminf = FP16ToFloat32(d), FP16ToFloat32(dmin)
			for s := range 16 {
				sc[s], m[s] = r.IntN(16), r.IntN(16)
				b[s] = byte(sc[s] | m[s]<<4)
			}
		} else {
			d := randHalf(r)
			putHalf(b[108:], d)
			df = FP16ToFloat32(d)
			for s := range 16 {
				sc[s] = r.IntN(64)
				setNibble(&b[96+s%8], sc[s]&15, s >= 8)
				b[96+8+s%4] |= byte(sc[s]>>4) << (2 * (s / 4))
			}
		}
		for i := 0; i < 256; i++ {
			n, k, l := i/128, i%128/32, i%32
			s := i / 16
			if typ == Q2_K {
				q := r.IntN(4)
				b[16+32*n+l] |= byte(q) << (2 * k)
				want[i] = float32(float32(df*float32(sc[s]))*float32(q)) - float32(dminf*float32(m[s]))
			} else {
				q := r.IntN(8) - 4 // −4..3: bit 2 set in hmask means no −4
				b[32+32*n+l] |= byte(q&3) << (2 * k)
				if q >= 0 {
					b[l] |= 1 << (4*n + k)
				}
				want[i] = float32(df*float32(sc[s]-32)) * float32(q)
			}
		}
	case Q8_K:
		d := float32(r.NormFloat64())
		binary.LittleEndian.PutUint32(b, math.Float32bits(d))
		for i := 0; i < 256; i++ {
			q := r.IntN(256) - 128
			b[4+i] = byte(int8(q))
			want[i] = d * float32(q)
		}
	}
	return encoded{b, want}
}

// TestDequantizeEncoded packs many random blocks per format from logical
// fields and checks every element, bit for bit, across several blocks in a
// row.
func TestDequantizeEncoded(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, typ := range []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K} {
		t.Run(typ.String(), func(t *testing.T) {
			for trial := 0; trial < 50; trial++ {
				var src []byte
				var want []float32
				for blk := 0; blk < 3; blk++ {
					var e encoded
					if typ.BlockSize() == 32 {
						e = encodeLegacy(r, typ)
					} else {
						e = encodeK(r, typ)
					}
					src = append(src, e.src...)
					want = append(want, e.want...)
				}
				got := make([]float32, len(want))
				if err := DequantizeRow(typ, src, got); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("trial %d element %d = %v, want %v", trial, i, got[i], want[i])
					}
				}
			}
		})
	}
}

func TestDequantizePlain(t *testing.T) {
	f32 := f32Bytes(1.5, -2, float32(math.Inf(-1)))
	f16 := []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00} // 1, -2, 2^-24
	bf16 := []byte{0x80, 0x3f, 0x49, 0x40}            // 1, 3.140625
	for _, tc := range []struct {
		typ  Type
		src  []byte
		want []float32
	}{
		{F32, f32, []float32{1.5, -2, float32(math.Inf(-1))}},
		{F16, f16, []float32{1, -2, float32(math.Ldexp(1, -24))}},
		{BF16, bf16, []float32{1, 3.140625}},
	} {
		got := make([]float32, len(tc.want))
		if err := DequantizeRow(tc.typ, tc.src, got); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s[%d] = %v, want %v", tc.typ, i, got[i], tc.want[i])
			}
		}
	}
}

func TestDequantizeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  Type
		src  int
		dst  int
		want string
	}{
		{"unsupported", IQ2_XXS, 66, 256, "dequantizing IQ2_XXS is not supported"},
		{"int type", I32, 4, 1, "dequantizing I32 is not supported"},
		{"unknown", Type(77), 4, 1, "unknown ggml type 77"},
		{"partial block", Q8_0, 34, 31, "not a whole number of Q8_0 blocks of 32"},
		{"short src", Q4_K, 143, 256, "src has 143 bytes, 256 elements of Q4_K take 144"},
		{"long src", F32, 12, 2, "src has 12 bytes"},
	} {
		err := DequantizeRow(tc.typ, make([]byte, tc.src), make([]float32, tc.dst))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	tt := &Tensor{Name: "x", Type: Q8_0, Dims: []uint64{32, 2}, Data: make([]byte, 68)}
	if err := Dequantize(tt, make([]float32, 63)); err == nil || !strings.Contains(err.Error(), `"x": dst has 63 elements, the tensor 64`) {
		t.Errorf("Dequantize short dst: %v", err)
	}
	tt.Data = tt.Data[:67]
	if err := Dequantize(tt, make([]float32, 64)); err == nil || !strings.Contains(err.Error(), `"x": src has 67 bytes`) {
		t.Errorf("Dequantize short data: %v", err)
	}
	if !CanDequantize(Q6_K) || CanDequantize(IQ4_XS) || CanDequantize(Type(5)) {
		t.Error("CanDequantize")
	}
}

// ---- Round trips through simple quantizers ---------------------------------
//
// Each quantizer picks fp16 scales rounded up, so that every input fits the
// quant range without clamping; then each dequantized value is within half
// a quantization step of its input (plus float32 rounding).

func roundHalfAway(x float64) int { return int(math.Copysign(math.Floor(math.Abs(x)+0.5), x)) }

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

// quantize returns the blocks and, per element, the step d_eff whose half
// bounds the error.
func quantize(typ Type, x []float32) ([]byte, []float32) {
	bs := typ.BlockSize()
	var out []byte
	step := make([]float32, len(x))
	for b0 := 0; b0 < len(x); b0 += bs {
		xb := x[b0 : b0+bs]
		blk := make([]byte, typ.TypeSize())
		amax := float32(0)
		for _, v := range xb {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		switch typ {
		case Q8_0, Q4_0:
			qmax := 127
			if typ == Q4_0 {
				qmax = 7 // use −7..7 of −8..7
			}
			d := toHalfUp(amax / float32(qmax))
			putHalf(blk, d)
			df := FP16ToFloat32(d)
			for i, v := range xb {
				q := 0
				if df > 0 {
					q = clampInt(roundHalfAway(float64(v)/float64(df)), -qmax, qmax)
				}
				if typ == Q8_0 {
					blk[2+i] = byte(int8(q))
				} else {
					setNibble(&blk[2+i%16], q+8, i >= 16)
				}
				step[b0+i] = df
			}
		case Q4_K:
			// Per sub-block of 32: min mn ≤ 0 stored as dmin·m, range up to
			// 15·d·sc. Scales fit 6 bits because d and dmin are rounded up
			// from the largest sub-block needs.
			var rng, neg [8]float32
			var maxRng, maxNeg float32
			for j := range 8 {
				lo, hi := float32(0), float32(0)
				for _, v := range xb[32*j : 32*j+32] {
					lo, hi = min(lo, v), max(hi, v)
				}
				neg[j], rng[j] = -lo, hi-lo
				maxRng, maxNeg = max(maxRng, rng[j]), max(maxNeg, -lo)
			}
			d := toHalfUp(maxRng * 1.05 / (15 * 63))
			dmin := toHalfUp(maxNeg * 1.05 / 63)
			putHalf(blk, d)
			putHalf(blk[2:], dmin)
			df, dminf := FP16ToFloat32(d), FP16ToFloat32(dmin)
			for j := range 8 {
				m := 0
				if dminf > 0 {
					m = int(math.Ceil(float64(neg[j]) / float64(dminf)))
				}
				off := float64(dminf) * float64(m) // the offset actually stored, ≥ −min
				sc := 0
				if df > 0 {
					// The largest value plus the offset must fit 15 steps.
					sc = clampInt(int(math.Ceil((float64(rng[j])-float64(neg[j])+off)/(15*float64(df)))), 0, 63)
				}
				packScaleMinK4(blk[4:16], j, uint8(sc), uint8(m))
				dl := float64(df) * float64(sc)
				for l, v := range xb[32*j : 32*j+32] {
					q := 0
					if dl > 0 {
						q = clampInt(roundHalfAway((float64(v)+off)/dl), 0, 15)
					}
					setNibble(&blk[16+32*(j/2)+l], q, j%2 == 1)
					step[b0+32*j+l] = float32(dl)
				}
			}
		case Q6_K:
			// Per sub-block of 16: scale sc = ⌈amax_s / (31·d)⌉ ≤ 127.
			d := toHalfUp(amax * 1.01 / (31 * 127))
			putHalf(blk[208:], d)
			df := FP16ToFloat32(d)
			for s := range 16 {
				am := float32(0)
				for _, v := range xb[16*s : 16*s+16] {
					am = max(am, float32(math.Abs(float64(v))))
				}
				sc := 0
				if df > 0 {
					sc = clampInt(int(math.Ceil(float64(am)/(31*float64(df)))), 0, 127)
				}
				blk[192+s] = byte(int8(sc))
				dl := float64(df) * float64(sc)
				for k, v := range xb[16*s : 16*s+16] {
					i := 16*s + k
					q := 0
					if dl > 0 {
						q = clampInt(roundHalfAway(float64(v)/dl), -32, 31)
					}
					u := q + 32
					n, g, l := i/128, i%128/32, i%32
					setNibble(&blk[64*n+l+32*(g%2)], u&15, g >= 2)
					blk[128+32*n+l] |= byte(u>>4) << (2 * g)
					step[b0+i] = float32(dl)
				}
			}
		}
		out = append(out, blk...)
	}
	return out, step
}

func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, typ := range []Type{Q8_0, Q4_0, Q4_K, Q6_K} {
		for _, scale := range []float64{1, 0.01, 300} {
			n := 4 * 256
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64() * scale)
				if i%97 < 3 {
					x[i] = 0 // some zero runs
				}
			}
			for i := 512; i < 512+32; i++ {
				x[i] = 0 // an all-zero block / sub-block
			}
			src, step := quantize(typ, x)
			got := make([]float32, n)
			if err := DequantizeRow(typ, src, got); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range x {
				// Slack for float32 rounding, relative to the block's magnitude.
				amax := 0.0
				for _, v := range x[i/256*256 : i/256*256+256] {
					amax = max(amax, math.Abs(float64(v)))
				}
				err := math.Abs(float64(got[i]) - float64(x[i]))
				bound := float64(step[i])/2 + 1e-6*amax
				if err > bound {
					t.Fatalf("%s scale %g: element %d: |%v − %v| = %g > step/2 = %g", typ, scale, i, got[i], x[i], err, bound)
				}
				worst = max(worst, err/scale)
			}
			t.Logf("%s scale %g: worst error %.3g·scale", typ, scale, worst)
		}
	}
}
