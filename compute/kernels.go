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
}

var generic = kernelSet{
	name:      "generic",
	dot:       dotGeneric,
	dot4:      dot4Generic,
	axpy:      axpyGeneric,
	bf16ToF32: bf16ToF32Generic,
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

// Softmax replaces x with exp(x - max) / Σ exp(x - max).
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var sum float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range x {
		x[i] *= inv
	}
}

// SiLUMul sets gate[i] = silu(gate[i]) · up[i], the SwiGLU activation.
func SiLUMul(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		gate[i] = g / (1 + float32(math.Exp(float64(-g)))) * up[i]
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
