package compute

// The Fast-mode kernels. Each sets y[t·ldy+r] = Σ_i w_r[i]·x_t[i] for
// r < rows and t < ntok, where w holds rows consecutive weight rows of its
// type and x_t is activation row t: quantized (a, for the block types) or
// rounded to bfloat16 (xb, for BF16 weights). Sums of int8 products are
// exact int32s; a block's integer sum is scaled by the product of the
// weight's and the activation's block scales and added in float32.

// matQFunc is the signature of the int8 kernels.
type matQFunc func(y []float32, ldy int, w []byte, rows int, a *qact, ntok int)

// matBF16Func is the signature of the bfloat16 kernel: w rows of cols
// values (row stride cols), xb ntok rows of cols values.
type matBF16Func func(y []float32, ldy int, w []uint16, rows, cols int, xb []uint16, ntok int)

func matQ8_0Generic(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	cols := a.cols
	rb := RowBytes(Q8_0, cols)
	for r := range rows {
		row := w[r*rb : (r+1)*rb]
		for t := range ntok {
			var sum float32
			for b := 0; b < cols/Q8Block; b++ {
				blk := row[b*Q8BlockBytes : (b+1)*Q8BlockBytes]
				aq := a.q[t*cols+b*Q8Block:][:Q8Block]
				var s int32
				for i, v := range blk[2:] {
					s += int32(int8(v)) * int32(aq[i])
				}
				sum += q8Scale(blk) * a.d[t*cols/ActBlock+b] * float32(s)
			}
			y[t*ldy+r] = sum
		}
	}
}

func matQ4_0Generic(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	cols := a.cols
	rb := RowBytes(Q4_0, cols)
	for r := range rows {
		row := w[r*rb : (r+1)*rb]
		for t := range ntok {
			var sum float32
			for b := 0; b < cols/Q4_0Block; b++ {
				blk := row[b*Q4_0BlockBytes : (b+1)*Q4_0BlockBytes]
				aq := a.q[t*cols+b*Q4_0Block:][:Q4_0Block]
				var s int32
				for j, v := range blk[2:] {
					s += int32(v&15)*int32(aq[j]) + int32(v>>4)*int32(aq[j+16])
				}
				s -= 8 * (a.s[(t*cols+b*Q4_0Block)/16] + a.s[(t*cols+b*Q4_0Block)/16+1])
				sum += f16At(blk) * a.d[t*cols/ActBlock+b] * float32(s)
			}
			y[t*ldy+r] = sum
		}
	}
}

func matQ5_0Generic(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	cols := a.cols
	rb := RowBytes(Q5_0, cols)
	for r := range rows {
		row := w[r*rb : (r+1)*rb]
		for t := range ntok {
			var sum float32
			for b := 0; b < cols/Q4_0Block; b++ {
				blk := row[b*Q5_0BlockBytes : (b+1)*Q5_0BlockBytes]
				e := t*cols + b*Q4_0Block
				var s int32
				for i := range Q4_0Block {
					s += int32(q5Code(blk, i)) * int32(a.q[e+i])
				}
				s -= 16 * (a.s[e/16] + a.s[e/16+1])
				sum += f16At(blk) * a.d[e/ActBlock] * float32(s)
			}
			y[t*ldy+r] = sum
		}
	}
}

func matQ4KGeneric(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	cols := a.cols
	rb := RowBytes(Q4_K, cols)
	for r := range rows {
		row := w[r*rb : (r+1)*rb]
		for t := range ntok {
			var sum float32
			for b := 0; b < cols/QKBlock; b++ {
				blk := row[b*Q4KBlockBytes : (b+1)*Q4KBlockBytes]
				d, dmin := f16At(blk), f16At(blk[2:])
				for j := range 4 {
					qs := blk[16+32*j : 16+32*j+32]
					e := t*cols + b*QKBlock + 64*j // first activation of this 64
					lo, hi := a.q[e:][:32], a.q[e+32:][:32]
					var s1, s2 int32
					for l, v := range qs {
						s1 += int32(v&15) * int32(lo[l])
						s2 += int32(v>>4) * int32(hi[l])
					}
					sc1, m1 := q4kScaleMin(2*j, blk[4:16])
					sc2, m2 := q4kScaleMin(2*j+1, blk[4:16])
					a1, a2 := a.d[e/ActBlock], a.d[e/ActBlock+1]
					sum1 := a.s[e/16] + a.s[e/16+1]
					sum2 := a.s[e/16+2] + a.s[e/16+3]
					sum += a1*(d*float32(sc1)*float32(s1)-dmin*float32(m1)*float32(sum1)) +
						a2*(d*float32(sc2)*float32(s2)-dmin*float32(m2)*float32(sum2))
				}
			}
			y[t*ldy+r] = sum
		}
	}
}

func matQ6KGeneric(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	cols := a.cols
	rb := RowBytes(Q6_K, cols)
	for r := range rows {
		row := w[r*rb : (r+1)*rb]
		for t := range ntok {
			var sum float32
			for b := 0; b < cols/QKBlock; b++ {
				blk := row[b*Q6KBlockBytes : (b+1)*Q6KBlockBytes]
				d := f16At(blk[208:])
				e0 := t*cols + b*QKBlock
				for g := range 16 { // sub-blocks of 16
					var s int32
					for i := 16 * g; i < 16*g+16; i++ {
						s += int32(q6kCode(blk, i)) * int32(a.q[e0+i])
					}
					s -= 32 * a.s[e0/16+g]
					sum += d * float32(int8(blk[192+g])) * a.d[e0/ActBlock+g/2] * float32(s)
				}
			}
			y[t*ldy+r] = sum
		}
	}
}

func matBF16FastGeneric(y []float32, ldy int, w []uint16, rows, cols int, xb []uint16, ntok int) {
	for r := range rows {
		wr := w[r*cols : (r+1)*cols]
		for t := range ntok {
			xt := xb[t*cols : (t+1)*cols]
			var s float32
			for i, v := range wr {
				s += bf16(v) * bf16(xt[i])
			}
			y[t*ldy+r] = s
		}
	}
}
