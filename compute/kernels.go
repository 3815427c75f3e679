package compute

import (
	"math"
	"os"
)

// kernelSet is one implementation of the inner loops. The generic set is
// plain Go; SIMD sets replace entries where the CPU supports them.
type kernelSet struct {
	name string
	// dot returns Σ a[i]·b[i] over len(a) elements.
	dot func(a, b []float32) float32
	// dot4 sets d[j] = Σ_i w[i]·x[j·n+i] for j < 4.
	dot4 func(d *[4]float32, w, x []float32, n int)
	// axpy sets y[i] += a·x[i].
	axpy func(y []float32, a float32, x []float32)
	// bf16ToF32 widens bfloat16 to float32.
	bf16ToF32 func(dst []float32, src []uint16)

	// gemm is MatMul's register-blocked kernel for float32 weight rows: it
	// sets y[t·ldy+r] = Σ_{i<k} w[r·ldw+i]·x[t·ldx+i] for r < gemmR and
	// t < ntok, where ntok is a multiple of gemmT.
	gemm         func(y []float32, ldy int, w []float32, ldw int, x []float32, ldx, k, ntok int)
	gemmR, gemmT int
	// dotBF16 is MatMul's kernel for few activation rows: it sets
	// d[r] = Σ_{i<k} bf16(w[r·ldw+i])·x[i] for r < len(d), widening the
	// bfloat16 weights on the fly.
	dotBF16 func(d []float32, w []uint16, ldw int, x []float32, k int)

	// expSum sets dst[i] = exp(src[i] − m) and returns Σ dst[i].
	expSum func(dst, src []float32, m float32) float32
	// maxF32 returns the largest element of a non-empty slice.
	maxF32 func(x []float32) float32
	// scal sets x[i] *= a.
	scal func(x []float32, a float32)
	// siluMul sets gate[i] = silu(gate[i])·up[i].
	siluMul func(gate, up []float32)

	// Attention blocks; see the exported functions in attention.go. d is
	// the row length; rows of k and v are contiguous (stride d).
	scores       func(dst, q, k []float32, scale float32)
	scoresBF16   func(dst, q []float32, k []uint16, scale float32)
	scoresMulti  func(dst []float32, ldDst int, q []float32, nq, d int, k []float32, rows int, scale float32)
	mixRows      func(out, p, v []float32)
	mixRowsBF16  func(out, p []float32, v []uint16)
	mixRowsMulti func(out []float32, ldOut int, p []float32, ldP, nq, d int, v []float32, rows int)

	// dotQ8 sets d[r] = Σ_{i<k} w_r[i]·x[i] for r < len(d), where w holds
	// len(d) Q8_0 rows of k elements (k a multiple of 32), dequantizing on
	// the fly.
	dotQ8 func(d []float32, w []byte, x []float32, k int)
	// q8ToF32 dequantizes len(dst)/32 Q8_0 blocks of src into dst.
	q8ToF32 func(dst []float32, src []byte)
	// dotQ4 is dotQ8 for Q4 rows (see Q4Block): d[r] = Σ_{i<k} w_r[i]·x[i]
	// for r < len(d), k a multiple of 32.
	dotQ4 func(d []float32, w []byte, x []float32, k int)
	// q4ToF32 dequantizes len(dst)/32 Q4 blocks of src into dst, exactly.
	q4ToF32 func(dst []float32, src []byte)

	// q4_0ToF32, q5_0ToF32, q4kToF32 and q6kToF32 dequantize whole ggml
	// blocks of src into dst[:len(dst)], exactly (see ggml.go).
	q4_0ToF32, q5_0ToF32, q4kToF32, q6kToF32 func(dst []float32, src []byte)

	// Fast numerics (see Numerics and qmat.go).
	// quantizeAct rounds rows [lo, hi) of x into a.
	quantizeAct func(a *qact, x []float32, lo, hi int)
	// f32ToBF16 rounds float32 to bfloat16, to nearest even.
	f32ToBF16                                   func(dst []uint16, src []float32)
	matQ8_0, matQ4_0, matQ5_0, matQ4_K, matQ6_K matQFunc
	matBF16Fast                                 matBF16Func
}

// widen returns the kernel that dequantizes blocks of dt to float32.
func (ks *kernelSet) widen(dt DType) func(dst []float32, src []byte) {
	switch dt {
	case Q8_0:
		return ks.q8ToF32
	case Q4:
		return ks.q4ToF32
	case Q4_0:
		return ks.q4_0ToF32
	case Q5_0:
		return ks.q5_0ToF32
	case Q4_K:
		return ks.q4kToF32
	case Q6_K:
		return ks.q6kToF32
	}
	panic("compute: no widening kernel for " + dt.String())
}

// matQ returns the int8 kernel for weights of type dt.
func (ks *kernelSet) matQ(dt DType) matQFunc {
	switch dt {
	case Q8_0:
		return ks.matQ8_0
	case Q4_0:
		return ks.matQ4_0
	case Q5_0:
		return ks.matQ5_0
	case Q4_K:
		return ks.matQ4_K
	case Q6_K:
		return ks.matQ6_K
	}
	return nil
}

// fast reports whether Fast numerics change how weights of type dt are
// multiplied. A SIMD set without a bfloat16 dot-product instruction has no
// matBF16Fast: there the Exact float32 kernels are the faster way.
func (ks *kernelSet) fast(dt DType) bool {
	return dt == BF16 && ks.matBF16Fast != nil || ks.matQ(dt) != nil
}

var generic = kernelSet{
	name:      "generic",
	dot:       dotGeneric,
	dot4:      dot4Generic,
	axpy:      axpyGeneric,
	bf16ToF32: bf16ToF32Generic,
	gemm:      gemmGeneric,
	gemmR:     1,
	gemmT:     4,
	dotBF16:   dotBF16Generic,

	expSum: expSumGeneric,
	maxF32: maxGeneric,
	scal:   scalGeneric,

	siluMul: siluMulGeneric,

	scores:       scoresGeneric,
	scoresBF16:   scoresBF16Generic,
	scoresMulti:  scoresMultiGeneric,
	mixRows:      mixRowsGeneric,
	mixRowsBF16:  mixRowsBF16Generic,
	mixRowsMulti: mixRowsMultiGeneric,

	dotQ8:   dotQ8Generic,
	q8ToF32: q8ToF32Generic,
	dotQ4:   dotQ4Generic,
	q4ToF32: q4ToF32Generic,

	q4_0ToF32: q4_0ToF32Generic,
	q5_0ToF32: q5_0ToF32Generic,
	q4kToF32:  q4kToF32Generic,
	q6kToF32:  q6kToF32Generic,

	quantizeAct: quantizeActGeneric,
	f32ToBF16:   F32ToBF16,
	matQ8_0:     matQ8_0Generic,
	matQ4_0:     matQ4_0Generic,
	matQ5_0:     matQ5_0Generic,
	matQ4_K:     matQ4KGeneric,
	matQ6_K:     matQ6KGeneric,
	matBF16Fast: matBF16FastGeneric,
}

// kernels is the set in use, chosen once at start-up.
var kernels = chooseKernels()

// GenericEnv is the environment variable that, set to 1, forces the portable
// Go kernels whatever the CPU offers.
const GenericEnv = "KVSERVE_GENERIC"

func chooseKernels() kernelSet {
	if os.Getenv(GenericEnv) == "1" {
		return generic
	}
	return bestKernels()
}

// KernelName names the kernel set in use, e.g. "generic" or "avx512".
func KernelName() string { return kernels.name }

// Dot returns the dot product of a and b[:len(a)].
func Dot(a, b []float32) float32 { return kernels.dot(a, b[:len(a)]) }

// Axpy adds a·x to y.
func Axpy(y []float32, a float32, x []float32) { kernels.axpy(y, a, x[:len(y)]) }

func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dot4Generic(d *[4]float32, w, x []float32, n int) {
	x0, x1, x2, x3 := x[:n], x[n:2*n], x[2*n:3*n], x[3*n:4*n]
	w = w[:n]
	var s0, s1, s2, s3 float32
	for i, wi := range w {
		s0 += wi * x0[i]
		s1 += wi * x1[i]
		s2 += wi * x2[i]
		s3 += wi * x3[i]
	}
	d[0], d[1], d[2], d[3] = s0, s1, s2, s3
}

// bf16 widens one bfloat16 value to float32, exactly.
func bf16(v uint16) float32 { return math.Float32frombits(uint32(v) << 16) }

// gemmGeneric is the 1 × 4 kernel: dot4 on one weight row.
func gemmGeneric(y []float32, ldy int, w []float32, ldw int, x []float32, ldx, k, ntok int) {
	w = w[:k]
	for t := 0; t < ntok; t += 4 {
		x0, x1, x2, x3 := x[t*ldx:][:k], x[(t+1)*ldx:][:k], x[(t+2)*ldx:][:k], x[(t+3)*ldx:][:k]
		var s0, s1, s2, s3 float32
		for i, wi := range w {
			s0 += wi * x0[i]
			s1 += wi * x1[i]
			s2 += wi * x2[i]
			s3 += wi * x3[i]
		}
		y[t*ldy], y[(t+1)*ldy], y[(t+2)*ldy], y[(t+3)*ldy] = s0, s1, s2, s3
	}
}

// dotBF16Generic computes one bf16 row × f32 dot product per output.
func dotBF16Generic(d []float32, w []uint16, ldw int, x []float32, k int) {
	for r := range d {
		wr, xr := w[r*ldw:][:k], x[:k]
		var s0, s1, s2, s3 float32
		for len(wr) >= 4 && len(xr) >= 4 {
			s0 += bf16(wr[0]) * xr[0]
			s1 += bf16(wr[1]) * xr[1]
			s2 += bf16(wr[2]) * xr[2]
			s3 += bf16(wr[3]) * xr[3]
			wr, xr = wr[4:], xr[4:]
		}
		for i, v := range wr {
			s0 += bf16(v) * xr[i]
		}
		d[r] = (s0 + s1) + (s2 + s3)
	}
}

func axpyGeneric(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// RMSNorm writes x / rms(x) · w into dst, where rms is the root mean square
// of x plus eps. With addOne the scale is (1 + w), Gemma's convention.
func RMSNorm(dst, x, w []float32, eps float32, addOne bool) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	inv := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	if addOne {
		for i, v := range x {
			dst[i] = v * inv * (1 + w[i])
		}
		return
	}
	for i, v := range x {
		dst[i] = w[i] * (v * inv)
	}
}

// SiLUMul sets gate[i] = silu(gate[i]) · up[i], the SwiGLU activation.
func SiLUMul(gate, up []float32) { kernels.siluMul(gate, up[:len(gate)]) }

func siluMulGeneric(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		gate[i] = g / (1 + expf(-g)) * up[i]
	}
}

// GELUTanhMul sets gate[i] = gelu_tanh(gate[i]) · up[i], Gemma's GeGLU.
func GELUTanhMul(gate, up []float32) {
	up = up[:len(gate)]
	const c = 0.7978845608028654 // √(2/π)
	for i, g := range gate {
		x := float64(g)
		gate[i] = float32(0.5*x*(1+math.Tanh(c*(x+0.044715*x*x*x)))) * up[i]
	}
}

// UseGeneric switches every kernel to the portable Go set (on) or back to
// the best set for this CPU (off), and returns a function that restores the
// previous choice. It exists so tests can check both paths in one run; it
// must not be called while kernels are running.
func UseGeneric(on bool) (restore func()) {
	prev := kernels
	if on {
		kernels = generic
	} else {
		kernels = bestKernels()
	}
	return func() { kernels = prev }
}
