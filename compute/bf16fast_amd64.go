//go:build amd64 && !purego

package compute

// The Fast-numerics bfloat16 kernels on AVX512_BF16 (VDPBF16PS) and the
// bit-exact float32 → bfloat16 rounding on AVX-512; see
// bf16fast_avx512_amd64.s.

//go:noescape
func dpbf16Tile4x4AVX512(y *float32, ldy int, w *uint16, ldw int, x *uint16, ldx, kmain int, tail uint32, ntok, acc int)

//go:noescape
func dpbf16Tile6x4AVX512(y *float32, ldy int, w *uint16, ldw int, x *uint16, ldx, kmain int, tail uint32, ntok, acc int)

//go:noescape
func dpbf16RowsAVX512(d *float32, w *uint16, ldw int, x *uint16, kmain int, tail uint32, rows int)

//go:noescape
func f32ToBF16AVX512(dst *uint16, src *float32, n int)

// bf16TokBlockBytes bounds the activations one pass of the 4 × 4 tiles
// streams past a group of weight rows: a block of tokens that stays in the
// 1–2 MB L2 caches of current cores beside the weight rows.
const bf16TokBlockBytes = 256 << 10

// bf16KBlock is the longest stretch of a row (bf16 values, a multiple of
// 32) one prefill tile call covers: 4 weight rows of it (16 KB) stay in a
// 32–48 KB L1 cache while the tokens stream past; longer rows are summed
// in stretches of it.
const bf16KBlock = 2048

// bf16PrefillTokens is the token count from which the tiles block the
// rows in stretches of bf16KBlock and the tokens in blocks.
const bf16PrefillTokens = 16

// matBF16FastAVX512 is the matBF16Func of the AVX512_BF16 set, in two
// regimes. Decode (fewer than bf16PrefillTokens tokens, memory-bound):
// each group of 6 weight rows (4 or fewer at the end) meets the tokens 4
// at a time in the 6 × 4 or 4 × 4 tile, and the last ntok mod 4 tokens
// (all of them in a step of 1–3) one at a time in the GEMV kernel while
// the group's rows are still in cache, so each weight is read from memory
// once. Prefill (compute-bound): tokens in blocks of bf16TokBlockBytes of
// activations and rows in stretches of bf16KBlock, the 6 × 4 tiles (a
// 4 × 4 one where 4 or 5 rows are left) adding each stretch's sums into
// y; the last ntok mod 4 tokens and the last rows mod 6 or 4 go through
// the GEMV kernel afterwards.
func matBF16FastAVX512(y []float32, ldy int, w []uint16, rows, cols int, xb []uint16, ntok int) {
	if rows <= 0 || ntok <= 0 {
		return
	}
	if cols <= 0 {
		for t := range ntok {
			clear(y[t*ldy : t*ldy+rows])
		}
		return
	}
	// Bounds of everything the kernels read and write.
	_, _, _ = y[(ntok-1)*ldy+rows-1], w[rows*cols-1], xb[ntok*cols-1]
	kmain, tail := cols&^31, uint32(1)<<(cols&31)-1
	nt4 := ntok &^ 3
	if ntok < bf16PrefillTokens {
		for r := 0; r < rows; {
			nr, t := min(rows-r, 3), 0
			switch {
			case rows-r >= 6 && nt4 > 0:
				nr, t = 6, nt4
				dpbf16Tile6x4AVX512(&y[r], ldy, &w[r*cols], cols, &xb[0], cols, kmain, tail, nt4, 0)
			case rows-r >= 4 && nt4 > 0:
				nr, t = 4, nt4
				dpbf16Tile4x4AVX512(&y[r], ldy, &w[r*cols], cols, &xb[0], cols, kmain, tail, nt4, 0)
			case nt4 == 0:
				nr = min(rows-r, 6)
			}
			for ; t < ntok; t++ {
				dpbf16RowsAVX512(&y[t*ldy+r], &w[r*cols], cols, &xb[t*cols], kmain, tail, nr)
			}
			r += nr
		}
		return
	}
	kc := min(cols, bf16KBlock)
	tb := max(4, bf16TokBlockBytes/(2*kc)&^3)
	rt := 0 // rows the tiles cover
	for t0 := 0; t0 < nt4; t0 += tb {
		nt := min(tb, nt4-t0)
		for k0 := 0; k0 < cols; k0 += kc {
			kn := min(kc, cols-k0)
			km, kt, acc := kn&^31, uint32(1)<<(kn&31)-1, min(k0, 1)
			r := 0
			for ; r+6 <= rows; r += 6 {
				dpbf16Tile6x4AVX512(&y[t0*ldy+r], ldy, &w[r*cols+k0], cols, &xb[t0*cols+k0], cols, km, kt, nt, acc)
			}
			for ; r+4 <= rows; r += 4 {
				dpbf16Tile4x4AVX512(&y[t0*ldy+r], ldy, &w[r*cols+k0], cols, &xb[t0*cols+k0], cols, km, kt, nt, acc)
			}
			rt = r
		}
	}
	for t := range ntok {
		r := rt
		if t >= nt4 {
			r = 0
		}
		if r < rows {
			dpbf16RowsAVX512(&y[t*ldy+r], &w[r*cols], cols, &xb[t*cols], kmain, tail, rows-r)
		}
	}
}

// f32ToBF16AVX512Go is F32ToBF16, 16 values at a time.
func f32ToBF16AVX512Go(dst []uint16, src []float32) {
	n := len(src)
	dst = dst[:n]
	m := n &^ 15
	if m > 0 {
		f32ToBF16AVX512(&dst[0], &src[0], m)
	}
	F32ToBF16(dst[m:], src[m:])
}
