package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
)

// expULP returns how many float32 ulps of exp(x) got is from the true
// value. +Inf counts as 2^128 (both ways), so an overflow near the threshold costs
// little and one far below it a lot.
func expULP(got float32, x float32) float64 {
	want := min(math.Exp(float64(x)), 0x1p128)
	g := float64(got)
	if math.IsInf(g, 1) {
		g = 0x1p128
	}
	ulp := 0x1p-149
	if want >= 0x1p-126 {
		_, e := math.Frexp(min(want, 0x1p127))
		ulp = math.Ldexp(1, e-24)
	}
	return math.Abs(g-want) / ulp
}

// expSpecial are inputs at the edges of exp's range.
var expSpecial = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 1e-7, -1e-7, 0.34657359, -0.34657359,
	float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, -math.MaxFloat32,
	88.7228, 88.72283, 88.72284, 88.7229, 88.8, 89, 100, 1000,
	-87.33654, -87.3366, -87.34, -100, -103.27893, -103.9720, -103.97208, -103.9721, -104, -104.1, -1000,
	math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
}

// checkExp runs one kernel set's exp over xs and returns the largest error
// in ulps, and where it was.
func checkExp(t *testing.T, ks *kernelSet, xs []float32) (worst float64, at float32) {
	t.Helper()
	got := make([]float32, len(xs)+2)
	got[len(xs)+1] = 42
	dst := got[1 : len(xs)+1] // unaligned
	ks.expSum(dst, xs, 0)
	if got[len(xs)+1] != 42 || got[0] != 0 {
		t.Fatalf("%s: exp of %d wrote outside dst", ks.name, len(xs))
	}
	for i, x := range xs {
		g := dst[i]
		switch {
		case x != x:
			if g == g {
				t.Errorf("%s: exp(NaN) = %v", ks.name, g)
			}
			continue
		case math.IsInf(float64(x), -1):
			if g != 0 {
				t.Errorf("%s: exp(-Inf) = %v", ks.name, g)
			}
			continue
		case math.IsInf(float64(x), 1):
			if !math.IsInf(float64(g), 1) {
				t.Errorf("%s: exp(+Inf) = %v", ks.name, g)
			}
			continue
		}
		if e := expULP(g, x); e > worst || e != e {
			worst, at = e, x
		}
	}
	return worst, at
}

func TestExpF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	xs := append([]float32(nil), expSpecial...)
	xs = append(xs, float32(math.NaN()))
	for range 200000 { // the whole useful range
		xs = append(xs, float32(rng.Float64()*200-108))
	}
	for range 50000 { // near 0, where results are near 1
		xs = append(xs, float32(rng.NormFloat64()*1e-3))
	}
	for range 50000 { // any bit pattern
		xs = append(xs, math.Float32frombits(rng.Uint32()))
	}
	for _, ks := range allSets() {
		worst, at := checkExp(t, &ks, xs)
		t.Logf("%s: largest error %.3f ulp, at %v", ks.name, worst, at)
		if worst > 2 {
			t.Errorf("%s: exp(%v) is %.3f ulp off", ks.name, at, worst)
		}
		for _, n := range awkwardLengths {
			if worst, at := checkExp(t, &ks, xs[:n]); worst > 2 {
				t.Errorf("%s: exp of %d values: exp(%v) is %.3f ulp off", ks.name, n, at, worst)
			}
		}
	}
}

// TestExpF32Exhaustive checks every float32 input; it takes a minute or so,
// so runs only with KVSERVE_EXP_EXHAUSTIVE=1. The doc comment of ExpF32
// quotes its results.
func TestExpF32Exhaustive(t *testing.T) {
	if os.Getenv("KVSERVE_EXP_EXHAUSTIVE") != "1" {
		t.Skip("set KVSERVE_EXP_EXHAUSTIVE=1 to check all 2^32 inputs")
	}
	for _, ks := range allSets() {
		const chunk = 1 << 16
		workers := runtime.GOMAXPROCS(0)
		var mu sync.Mutex
		var worst float64
		var at float32
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				xs := make([]float32, chunk)
				for c := w; c < 1<<32/chunk; c += workers {
					for i := range xs {
						xs[i] = math.Float32frombits(uint32(c*chunk + i))
					}
					e, x := checkExp(t, &ks, xs)
					mu.Lock()
					if e > worst {
						worst, at = e, x
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		t.Logf("%s: largest error over all inputs %.4f ulp, at %v (%#08x)", ks.name, worst, at, math.Float32bits(at))
		if worst > 2 {
			t.Errorf("%s: exp(%v) is %.3f ulp off", ks.name, at, worst)
		}
	}
}

func TestExpF32Public(t *testing.T) {
	src := []float32{0, 1, -1, 2, float32(math.Inf(-1)), 3, 4, 5, 6, 7}
	dst := make([]float32, len(src))
	for _, generic := range []bool{false, true} {
		restore := UseGeneric(generic)
		ExpF32(dst, src)
		restore()
		for i, x := range src {
			if e := expULP(dst[i], x); e > 2 {
				t.Errorf("generic=%v: ExpF32(%v) = %v", generic, x, dst[i])
			}
		}
	}
	ExpF32(src, src) // in place
	if src[0] != 1 || src[4] != 0 {
		t.Errorf("ExpF32 in place: %v", src)
	}
}

func softmaxRef(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(x))
	var s float64
	for i, v := range x {
		out[i] = math.Exp(float64(v) - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func TestSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, ks := range allSets() {
		for _, n := range append(awkwardLengths[1:], 4096, 4099) {
			for _, spread := range []float64{1, 30} {
				buf := randF32(rng, n+1)[1:]
				for i := range buf {
					buf[i] *= float32(spread)
					if rng.IntN(7) == 0 && i > 0 {
						buf[i] = float32(math.Inf(-1)) // masked
					}
				}
				want := softmaxRef(buf)
				restore := UseGeneric(ks.name == "generic")
				Softmax(buf)
				restore()
				var sum float64
				for i, w := range want {
					g := float64(buf[i])
					sum += g
					if math.Abs(g-w) > 1e-5*w+1e-12 {
						t.Fatalf("%s: softmax of %d (spread %v), element %d: got %v, want %v", ks.name, n, spread, i, g, w)
					}
				}
				if math.Abs(sum-1) > 1e-5 {
					t.Errorf("%s: softmax of %d sums to %v", ks.name, n, sum)
				}
			}
		}
	}
}

// softmaxF64 is the Softmax kvserve had before ExpF32, for comparison.
func softmaxF64(x []float32) {
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

// BenchmarkExp measures ExpF32 over 4096 values, in elements per second.
func BenchmarkExp(b *testing.B) {
	rng := rand.New(rand.NewPCG(35, 36))
	src := make([]float32, 4096)
	for i := range src {
		src[i] = float32(rng.Float64()*40 - 30)
	}
	dst := make([]float32, len(src))
	b.Run("mathExp", func(b *testing.B) {
		for b.Loop() {
			for i, v := range src {
				dst[i] = float32(math.Exp(float64(v)))
			}
		}
		b.ReportMetric(float64(len(src))/(b.Elapsed().Seconds()/float64(b.N))/1e9, "Gelem/s")
	})
	for _, ks := range allSets() {
		b.Run(ks.name, func(b *testing.B) {
			for b.Loop() {
				ks.expSum(dst, src, 0)
			}
			b.ReportMetric(float64(len(src))/(b.Elapsed().Seconds()/float64(b.N))/1e9, "Gelem/s")
		})
	}
}

// BenchmarkSoftmax compares Softmax with its float64-exp predecessor.
func BenchmarkSoftmax(b *testing.B) {
	rng := rand.New(rand.NewPCG(37, 38))
	for _, n := range []int{512, 2048, 4096} {
		src := randF32(rng, n)
		x := make([]float32, n)
		b.Run(fmt.Sprintf("old-f64/%d", n), func(b *testing.B) {
			for b.Loop() {
				copy(x, src)
				softmaxF64(x)
			}
			b.ReportMetric(float64(n)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "Gelem/s")
		})
		for _, ks := range allSets() {
			b.Run(fmt.Sprintf("%s/%d", ks.name, n), func(b *testing.B) {
				restore := UseGeneric(ks.name == "generic")
				defer restore()
				for b.Loop() {
					copy(x, src)
					Softmax(x)
				}
				b.ReportMetric(float64(n)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "Gelem/s")
			})
		}
	}
}

// TestMaxF32NoOverread checks that MaxF32 reads nothing past its slice: the
// AVX2 kernel once read 8 floats beyond a slice of exactly 32.
func TestMaxF32NoOverread(t *testing.T) {
	for n := 1; n <= 80; n++ {
		buf := make([]float32, n+16)
		for i := range buf {
			buf[i] = 1e30
		}
		for i := range n {
			buf[i] = float32(i%7) - 3
		}
		if got, want := MaxF32(buf[:n]), float32(min(n-1, 6)%7-3); got != want && n > 0 {
			t.Errorf("MaxF32 of %d floats = %v, want %v", n, got, want)
		}
	}
}

// TestSiLUMul checks every kernel set's SwiGLU activation against float64
// on ordinary, large and special inputs, at awkward lengths.
func TestSiLUMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	gate := []float32{0, -0, 1, -1, 20, -20, 88, -88, 100, -100, 200, -200, 1e30, -1e30}
	for range 5000 {
		gate = append(gate, float32(rng.NormFloat64()*4))
	}
	up := make([]float32, len(gate))
	for i := range up {
		up[i] = float32(rng.NormFloat64())
	}
	want := func(g, u float32) float64 {
		x := float64(g)
		return x / (1 + math.Exp(-x)) * float64(u)
	}
	for _, ks := range allSets() {
		for _, n := range append([]int{len(gate)}, awkwardLengths...) {
			n = min(n, len(gate))
			got := append([]float32(nil), gate[:n]...)
			ks.siluMul(got, up[:n])
			for i, g := range got {
				w := want(gate[i], up[i])
				if d := math.Abs(float64(g) - w); !(d <= 1e-6*math.Max(1, math.Abs(w))) {
					t.Errorf("%s n=%d: silu(%v)·%v = %v, want %v", ks.name, n, gate[i], up[i], g, w)
					break
				}
			}
		}
	}
}
