//go:build amd64 && !purego

package compute

//go:noescape
func fmaChainsAVX2(iters int) float32

//go:noescape
func sumAVX2(p *float32, n int) float32

// peakKernel uses AVX2+FMA where the CPU has it (twelve chains of 8-lane
// FMAs: enough in flight to cover two FMA pipes of four-cycle latency).
var peakKernel = func() peakProbes {
	if !hasAVX2() {
		return peakGeneric
	}
	return peakProbes{flopsPerIter: 12 * 8 * 2, fma: fmaChainsAVX2, sum: sumAVX2Go}
}()

func sumAVX2Go(x []float32) float32 {
	n := len(x) &^ 31
	var s float32
	if n > 0 {
		s = sumAVX2(&x[0], n)
	}
	return s + sumGeneric(x[n:])
}
