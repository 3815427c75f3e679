package compute

// Machine-peak probes for `kvserve bench perf`'s roofline: a register-only
// FMA loop (no memory traffic) and a streaming sum (memory traffic, little
// arithmetic). They run on the calling goroutine; callers time them and
// run one per thread for the all-thread peaks.

// PeakFMAFlopsPerIter is the floating-point operations (a fused
// multiply-add counts two) one iteration of PeakFMA performs.
func PeakFMAFlopsPerIter() int { return peakKernel.flopsPerIter }

// PeakFMA runs iters iterations of independent float32 FMA chains held in
// registers, PeakFMAFlopsPerIter flops each, and returns a value derived
// from the chains so the work cannot be optimized away.
func PeakFMA(iters int) float32 {
	if iters <= 0 {
		return 0
	}
	return peakKernel.fma(iters)
}

// PeakRead returns the sum of x, reading it front to back as fast as the
// kernels allow: a memory-bandwidth probe when x is much larger than the
// caches.
func PeakRead(x []float32) float32 { return peakKernel.sum(x) }

// peakProbes is one implementation of the probes.
type peakProbes struct {
	flopsPerIter int
	fma          func(iters int) float32
	sum          func(x []float32) float32
}

// peakGeneric is the portable version: eight scalar multiply-add chains
// (the compiler may or may not fuse them) and a four-way sum.
var peakGeneric = peakProbes{flopsPerIter: 16, fma: fmaGeneric, sum: sumGeneric}

func fmaGeneric(iters int) float32 {
	const m, a = 0.999, 1e-3
	var x0, x1, x2, x3, x4, x5, x6, x7 float32
	for range iters {
		x0 = x0*m + a
		x1 = x1*m + a
		x2 = x2*m + a
		x3 = x3*m + a
		x4 = x4*m + a
		x5 = x5*m + a
		x6 = x6*m + a
		x7 = x7*m + a
	}
	return ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7))
}

func sumGeneric(x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i]
		s1 += x[i+1]
		s2 += x[i+2]
		s3 += x[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i]
	}
	return (s0 + s1) + (s2 + s3)
}
