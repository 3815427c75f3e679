package compute

import "math"

// Fast float32 exp. Every kernel set computes exp(x) as 2^n · p(r), with
// n = round(x·log₂e), r = x − n·ln2 (|r| ≤ ln2/2) and p a degree-6
// polynomial 1 + r + c₂r² + … + c₆r⁶ fitted for least maximum relative
// error on [−ln2/2, ln2/2] (3.8e-9 with these float32 coefficients, far
// below float32 rounding). The SIMD sets evaluate it in float32 with FMA
// and apply 2^n as two factors 2^⌊n/2⌋·2^(n−⌊n/2⌋), so that results in the
// subnormal range are rounded once, correctly; the generic set evaluates
// the polynomial with the same coefficients in float64 and rounds once at
// the end.
const (
	expC2 = 0.49999994    // 0x3efffffe
	expC3 = 0.166665211   // 0x3e2aaa49
	expC4 = 0.041668389   // 0x3d2aac79
	expC5 = 0.00836871658 // 0x3c091cf1
	expC6 = 0.00138145988 // 0x3ab5121a
	// Inputs are clamped to [expLo, expHi]: exp(expHi) overflows to +Inf
	// and exp(expLo) is below half the smallest subnormal, so rounds to 0.
	expHi = 88.8
	expLo = -104
)

// ExpF32 sets dst[i] = exp(src[i]) for i < len(src). dst may be src.
// Inputs above 88.72 give +Inf, −Inf and inputs below −103.97 give 0, NaN
// gives NaN, and results in the subnormal range are rounded correctly to
// within the error below.
//
// Measured against float64 math.Exp over all 2^32 float32 inputs
// (TestExpF32Exhaustive): the AVX2 kernel's largest error is 0.894 ulp (at
// x = 5.201929), the generic kernel's 0.545 ulp.
func ExpF32(dst, src []float32) {
	if len(dst) < len(src) {
		panic("compute.ExpF32: dst shorter than src")
	}
	kernels.expSum(dst[:len(src)], src, 0)
}

// expf returns exp(x) rounded to float32, evaluating the polynomial in
// float64 (see the constants above).
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > expHi:
		return float32(math.Inf(1))
	case x < expLo:
		return 0
	}
	const shift = 0x1.8p52 // adding it rounds to an integer
	xd := float64(x)
	n := (xd*math.Log2E + shift) - shift
	r := xd - n*math.Ln2
	p := expC6*r + expC5
	p = p*r + expC4
	p = p*r + expC3
	p = p*r + expC2
	p = p*r + 1
	p = p*r + 1
	return float32(p * math.Float64frombits(uint64(int64(n)+1023)<<52))
}

// expSumGeneric sets dst[i] = exp(src[i] − m) and returns their sum.
func expSumGeneric(dst, src []float32, m float32) float32 {
	dst = dst[:len(src)]
	var s float32
	for i, v := range src {
		e := expf(v - m)
		dst[i] = e
		s += e
	}
	return s
}

// maxGeneric returns the largest element of x, which is not empty.
func maxGeneric(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}

// scalGeneric sets x[i] *= a.
func scalGeneric(x []float32, a float32) {
	for i := range x {
		x[i] *= a
	}
}

// MaxF32 returns the largest element of x, which must not be empty.
func MaxF32(x []float32) float32 {
	if len(x) == 0 {
		panic("compute.MaxF32 of nothing")
	}
	return kernels.maxF32(x)
}

// ExpSub sets dst[i] = exp(src[i] − m), with ExpF32's exp, and returns the
// sum of dst[:len(src)]. dst may be src. With m = MaxF32(src) it is the
// unnormalised softmax: attention can mix values with these weights and
// scale the len(out) outputs by 1/sum afterwards, saving a pass over the
// scores, or keep a running max and sum across blocks of keys.
func ExpSub(dst, src []float32, m float32) (sum float32) {
	if len(dst) < len(src) {
		panic("compute.ExpSub: dst shorter than src")
	}
	return kernels.expSum(dst[:len(src)], src, m)
}

// Scale multiplies every element of x by a.
func Scale(x []float32, a float32) { kernels.scal(x, a) }

// Softmax replaces x with exp(x − max) / Σ exp(x − max), using ExpF32's
// exp, in three vectorised passes (max; exp and sum; scale). Entries of
// −Inf (masked keys) become 0; x needs at least one finite entry, or all
// of it becomes NaN.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	ks := &kernels
	m := ks.maxF32(x)
	sum := ks.expSum(x, x, m)
	ks.scal(x, 1/sum)
}
