//go:build amd64 && !purego

package compute

// The AVX2 kernels of Fast-mode Q8_0 and Q4_0 products, for CPUs without
// VNNI: VPMADDUBSW on weight magnitudes and sign-adjusted activations,
// VPMADDWD to int32, one weight row × up to 4 tokens per call
// (q8q4_gen.go writes them).

//go:noescape
func q8q4QuantizeAVX2(q *int8, d *float32, s *int32, x *float32, blocks int)

func quantizeActAVX2(a *qact, x []float32, lo, hi int) {
	if hi <= lo {
		return
	}
	cols := a.cols
	n := (hi - lo) * cols
	if n == 0 {
		return
	}
	b := lo * cols
	_, _, _, _ = x[b+n-1], a.q[b+n-1], a.d[(b+n)/ActBlock-1], a.s[(b+n)/16-1]
	q8q4QuantizeAVX2(&a.q[b], &a.d[b/ActBlock], &a.s[b/16], &x[b], n/ActBlock)
}

// q8q4AVX2Func is a generated AVX2 kernel: one row of nb blocks at w
// against T tokens (values at aq + i·cols, scales at ad + i·cols/32).
type q8q4AVX2Func func(y *float32, ldy int, w *byte, aq *int8, ad *float32, cols, nb int)

func matQ8_0AVX2(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matQAVX2(y, ldy, w, rows, a, ntok, Q8_0, &q8q4Q8_0AVX2)
}

func matQ4_0AVX2(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matQAVX2(y, ldy, w, rows, a, ntok, Q4_0, &q8q4Q4_0AVX2)
}

func matQAVX2(y []float32, ldy int, w []byte, rows int, a *qact, ntok int, dt DType, kern *[4]q8q4AVX2Func) {
	if rows <= 0 || ntok <= 0 {
		return
	}
	cols := a.cols
	nb := cols / ActBlock
	if nb == 0 {
		matQTail(y, ldy, w, rows, a, ntok, dt, 0, false)
		return
	}
	rb := RowBytes(dt, cols)
	// Bounds of everything the assembly reads and writes.
	_, _ = y[(ntok-1)*ldy+rows-1], w[rows*rb-1]
	_, _ = a.q[ntok*cols-1], a.d[ntok*nb-1]
	for t := 0; t < ntok; t += 4 {
		nt := min(4, ntok-t)
		for r := range rows {
			kern[nt-1](&y[t*ldy+r], ldy, &w[r*rb], &a.q[t*cols], &a.d[t*nb], cols, nb)
		}
	}
}
