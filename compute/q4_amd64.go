//go:build amd64 && !purego

package compute

// Go halves of the AVX2 Q4 kernels: as for Q8_0, the wrappers check bounds
// and never pass a pointer into an empty slice.

//go:noescape
func dotQ4RowsAVX2(d *float32, w *byte, x *float32, nb, rows int)

//go:noescape
func q4ToF32AVX2(dst *float32, src *byte, nb int)

func dotQ4AVX2Go(d []float32, w []byte, x []float32, k int) {
	rows, nb := len(d), k/Q4Block
	if rows == 0 || nb == 0 {
		clear(d)
		return
	}
	_, _ = w[rows*nb*Q4BlockBytes-1], x[nb*Q4Block-1] // bounds
	dotQ4RowsAVX2(&d[0], &w[0], &x[0], nb, rows)
}

func q4ToF32AVX2Go(dst []float32, src []byte) {
	nb := len(dst) / Q4Block
	if nb == 0 {
		return
	}
	_ = src[nb*Q4BlockBytes-1] // bounds
	q4ToF32AVX2(&dst[0], &src[0], nb)
}
