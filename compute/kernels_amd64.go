//go:build amd64 && !purego

package compute

import "golang.org/x/sys/cpu"

// The assembly kernels take raw pointers and a length that is a multiple of
// 8; the wrappers below check bounds, handle the last len%8 elements in Go
// and never pass a pointer to an empty slice.

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func dot4AVX2(d *[4]float32, w, x *float32, ldx, k int)

//go:noescape
func gemm3x4TileAVX2(y *float32, ldy int, w *float32, ldw int, x *float32, ldx, k, ntok int)

//go:noescape
func dotBF16RowsAVX2(d *float32, w *uint16, ldw int, x *float32, k, rows int)

//go:noescape
func axpyAVX2(y, x *float32, a float32, n int)

//go:noescape
func bf16ToF32AVX2(dst *float32, src *uint16, n int)

var avx2 = kernelSet{
	name:      "avx2",
	dot:       dotAVX2Go,
	dot4:      dot4AVX2Go,
	axpy:      axpyAVX2Go,
	bf16ToF32: bf16ToF32AVX2Go,
	gemm:      gemm3x4TileAVX2Go,
	gemmR:     3,
	gemmT:     4,
	dotBF16:   dotBF16RowsAVX2Go,

	expSum: expSumAVX2Go,
	maxF32: maxAVX2Go,
	scal:   scalAVX2Go,

	siluMul: siluMulAVX2Go,

	scores:       scoresAVX2Go,
	scoresBF16:   scoresBF16AVX2Go,
	scoresMulti:  scoresMultiAVX2Go,
	mixRows:      mixRowsAVX2Go,
	mixRowsBF16:  mixRowsBF16AVX2Go,
	mixRowsMulti: mixRowsMultiAVX2Go,

	dotQ8:   dotQ8AVX2Go,
	q8ToF32: q8ToF32AVX2Go,
	dotQ4:   dotQ4AVX2Go,
	q4ToF32: q4ToF32AVX2Go,

	q4_0ToF32: q4_0ToF32Generic,
	q5_0ToF32: q5_0ToF32Generic,
	q4kToF32:  q4kToF32AVX2Go,
	q6kToF32:  q6kToF32AVX2Go,

	quantizeAct: quantizeActAVX2,
	f32ToBF16:   F32ToBF16,
	matQ8_0:     matQ8_0AVX2,
	matQ4_0:     matQ4_0AVX2,
	matQ5_0:     matQ5_0Generic,
	matQ4_K:     matQ4KAVX2,
	matQ6_K:     matQ6KAVX2,
	// No matBF16Fast: without VDPBF16PS, rounding activations to bf16
	// buys nothing, and the Exact fp32 kernels are ~60× the portable one.
}

// hasAVX2 reports whether the avx2 set runs here: it also uses F16C, which
// every AVX2 CPU has.
func hasAVX2() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C }

func bestKernels() kernelSet {
	switch {
	case avx512Wanted():
		return avx512Set()
	case hasAVX2():
		return avx2
	}
	return generic
}

// simdSets lists the SIMD kernel sets this CPU can run, for tests.
func simdSets() []kernelSet {
	var sets []kernelSet
	if hasAVX2() {
		sets = append(sets, avx2)
	}
	if hasAVX512() {
		sets = append(sets, avx512Set())
	}
	return sets
}

func dotAVX2Go(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	m := n &^ 7
	var s float32
	if m > 0 {
		s = dotAVX2(&a[0], &b[0], m)
	}
	for i := m; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func dot4AVX2Go(d *[4]float32, w, x []float32, n int) {
	w, x = w[:n], x[:4*n]
	m := n &^ 7
	if m == 0 {
		*d = [4]float32{}
	} else {
		dot4AVX2(d, &w[0], &x[0], n, m)
	}
	for i := m; i < n; i++ {
		wi := w[i]
		d[0] += wi * x[i]
		d[1] += wi * x[n+i]
		d[2] += wi * x[2*n+i]
		d[3] += wi * x[3*n+i]
	}
}

func gemm3x4TileAVX2Go(y []float32, ldy int, w []float32, ldw int, x []float32, ldx, k, ntok int) {
	if ntok <= 0 {
		return
	}
	// Bounds of everything read and written; k ≥ 1.
	_, _, _ = y[(ntok-1)*ldy+2], w[2*ldw+k-1], x[(ntok-1)*ldx+k-1]
	m := k &^ 7
	gemm3x4TileAVX2(&y[0], ldy, &w[0], ldw, &x[0], ldx, m, ntok&^3)
	gemmTail(y, ldy, w, ldw, x, ldx, m, k, ntok, 3)
}

// gemmTail adds columns [m, k) to the sums a GEMM tile kernel left in y
// for rows < r and tokens < ntok: the kernels stop at a multiple of their
// vector width.
func gemmTail(y []float32, ldy int, w []float32, ldw int, x []float32, ldx, m, k, ntok, r int) {
	if m == k {
		return
	}
	for t := range ntok {
		xt := x[t*ldx+m : t*ldx+k]
		for row := range r {
			s := y[t*ldy+row]
			for i, xi := range xt {
				s += w[row*ldw+m+i] * xi
			}
			y[t*ldy+row] = s
		}
	}
}

func dotBF16RowsAVX2Go(d []float32, w []uint16, ldw int, x []float32, k int) {
	rows := len(d)
	if rows == 0 {
		return
	}
	_, _ = w[(rows-1)*ldw+k-1], x[k-1] // bounds; k ≥ 1
	m := k &^ 7
	dotBF16RowsAVX2(&d[0], &w[0], ldw, &x[0], m, rows)
	dotBF16Tail(d, w, ldw, x, m, k)
}

// dotBF16Tail adds columns [m, k) to the bf16 GEMV sums in d, which the
// kernels stop at a multiple of their vector width.
func dotBF16Tail(d []float32, w []uint16, ldw int, x []float32, m, k int) {
	if m == k {
		return
	}
	for r := range d {
		s := d[r]
		for i := m; i < k; i++ {
			s += bf16(w[r*ldw+i]) * x[i]
		}
		d[r] = s
	}
}

func axpyAVX2Go(y []float32, a float32, x []float32) {
	n := len(y)
	x = x[:n]
	m := n &^ 7
	if m > 0 {
		axpyAVX2(&y[0], &x[0], a, m)
	}
	for i := m; i < n; i++ {
		y[i] += a * x[i]
	}
}

func bf16ToF32AVX2Go(dst []float32, src []uint16) {
	n := len(src)
	dst = dst[:n]
	m := n &^ 7
	if m > 0 {
		bf16ToF32AVX2(&dst[0], &src[0], m)
	}
	for i := m; i < n; i++ {
		dst[i] = bf16(src[i])
	}
}
