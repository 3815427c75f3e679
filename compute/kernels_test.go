package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// awkwardLengths are vector lengths around the SIMD widths and unroll
// factors, plus tinychat's dimensions.
var awkwardLengths = []int{0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 47, 63, 64, 65, 127, 128, 129, 383, 384, 385, 1023, 1024, 1025}

// allSets is every kernel set this CPU runs: the generic one first.
func allSets() []kernelSet { return append([]kernelSet{generic}, simdSets()...) }

func randF32(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.Float64()*2 - 1)
	}
	return s
}

// randBF16 returns bfloat16 values of magnitude below 2, some of them
// negative zeros and tiny (subnormal) values.
func randBF16(rng *rand.Rand, n int) []uint16 {
	s := make([]uint16, n)
	tmp := make([]float32, n)
	for i := range tmp {
		tmp[i] = float32(rng.Float64()*4 - 2)
	}
	F32ToBF16(s, tmp)
	for i := range s {
		switch rng.IntN(50) {
		case 0:
			s[i] = 0x8000 // -0
		case 1:
			s[i] = uint16(rng.IntN(0x7f)) | uint16(rng.IntN(2))<<15 // subnormal
		}
	}
	return s
}

// dotRef returns Σ a[i]·b[i] in float64 and Σ |a[i]·b[i]|, the scale that
// float32 rounding error is relative to.
func dotRef(n int, a, b func(i int) float64) (sum, mag float64) {
	for i := range n {
		p := a(i) * b(i)
		sum += p
		mag += math.Abs(p)
	}
	return sum, mag
}

// close32 reports whether got is within float32 rounding of want for a sum
// whose terms have absolute values adding up to mag.
func close32(got float32, want, mag float64) bool {
	return math.Abs(float64(got)-want) <= 1e-5*mag+1e-30
}

func TestDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ks := range allSets() {
		for _, n := range awkwardLengths {
			// Offset views so the SIMD loads are unaligned too.
			a, b := randF32(rng, n+1)[1:], randF32(rng, n+3)[3:]
			want, mag := dotRef(n, func(i int) float64 { return float64(a[i]) }, func(i int) float64 { return float64(b[i]) })
			if got := ks.dot(a, b); !close32(got, want, mag) {
				t.Errorf("%s: dot of %d: got %v, want %v", ks.name, n, got, want)
			}
		}
	}
}

func TestDot4(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, ks := range allSets() {
		for _, n := range awkwardLengths {
			w, x := randF32(rng, n), randF32(rng, 4*n)
			d := [4]float32{9, 9, 9, 9}
			ks.dot4(&d, w, x, n)
			for j := range 4 {
				want, mag := dotRef(n, func(i int) float64 { return float64(w[i]) }, func(i int) float64 { return float64(x[j*n+i]) })
				if !close32(d[j], want, mag) {
					t.Errorf("%s: dot4 of %d, row %d: got %v, want %v", ks.name, n, j, d[j], want)
				}
			}
		}
	}
}

func TestAxpy(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, ks := range allSets() {
		for _, n := range awkwardLengths {
			y, x := randF32(rng, n+2), randF32(rng, n+1)[1:]
			a := float32(rng.Float64()*2 - 1)
			orig := append([]float32(nil), y...)
			ks.axpy(y[:n], a, x)
			for i := range n {
				want := float64(orig[i]) + float64(a)*float64(x[i])
				if !close32(y[i], want, math.Abs(float64(orig[i]))+math.Abs(float64(a)*float64(x[i]))) {
					t.Fatalf("%s: axpy of %d, element %d: got %v, want %v", ks.name, n, i, y[i], want)
				}
			}
			if y[n] != orig[n] || y[n+1] != orig[n+1] {
				t.Fatalf("%s: axpy of %d wrote past the end", ks.name, n)
			}
		}
	}
}

func TestBF16ToF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	special := []uint16{0, 0x8000, 1, 0x807f, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff, 0x3f80}
	for _, ks := range allSets() {
		for _, n := range append(awkwardLengths, 4097) {
			src := make([]uint16, n)
			for i := range src {
				src[i] = uint16(rng.Uint32())
				if i < len(special) {
					src[i] = special[i]
				}
			}
			dst := make([]float32, n+1)
			dst[n] = 42
			ks.bf16ToF32(dst[:n], src)
			for i, v := range src {
				if got, want := math.Float32bits(dst[i]), uint32(v)<<16; got != want {
					t.Fatalf("%s: bf16 %#04x widened to %#08x, want %#08x", ks.name, v, got, want)
				}
			}
			if dst[n] != 42 {
				t.Fatalf("%s: bf16ToF32 of %d wrote past the end", ks.name, n)
			}
		}
	}
}

func TestGemmKernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, ks := range allSets() {
		R, T := ks.gemmR, ks.gemmT
		for _, k := range awkwardLengths[1:] {
			for _, ntok := range []int{T, 3 * T} {
				ldw, ldx, ldy := k+rng.IntN(9), k+rng.IntN(9), R+rng.IntN(5)
				w, x := randF32(rng, (R-1)*ldw+k), randF32(rng, (ntok-1)*ldx+k)
				y := make([]float32, ntok*ldy)
				for i := range y {
					y[i] = 7
				}
				ks.gemm(y[:(ntok-1)*ldy+R], ldy, w, ldw, x, ldx, k, ntok)
				for tt := range ntok {
					for r := range ldy {
						got := y[tt*ldy+r]
						if r >= R {
							if got != 7 {
								t.Errorf("%s: gemm k=%d wrote y[%d][%d]", ks.name, k, tt, r)
							}
							continue
						}
						want, mag := dotRef(k, func(i int) float64 { return float64(w[r*ldw+i]) }, func(i int) float64 { return float64(x[tt*ldx+i]) })
						if !close32(got, want, mag) {
							t.Errorf("%s: gemm k=%d (%d, %d): got %v, want %v", ks.name, k, r, tt, got, want)
						}
					}
				}
			}
		}
	}
}

func TestDotBF16Kernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, ks := range allSets() {
		for _, rows := range []int{1, 2, 5, 64} {
			for _, k := range awkwardLengths[1:] {
				ldw := k + rng.IntN(9)
				w, x := randBF16(rng, (rows-1)*ldw+k), randF32(rng, k)
				d := make([]float32, rows+1)
				d[rows] = 7
				ks.dotBF16(d[:rows], w, ldw, x, k)
				for r := range rows {
					want, mag := dotRef(k, func(i int) float64 { return float64(bf16(w[r*ldw+i])) }, func(i int) float64 { return float64(x[i]) })
					if !close32(d[r], want, mag) {
						t.Errorf("%s: dotBF16 k=%d row %d: got %v, want %v", ks.name, k, r, d[r], want)
					}
				}
				if d[rows] != 7 {
					t.Errorf("%s: dotBF16 wrote past %d outputs", ks.name, rows)
				}
			}
		}
	}
}

// TestSIMDMatchesGeneric checks each SIMD set against the generic one
// directly, on the public-facing kernels.
func TestSIMDMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, ks := range simdSets() {
		for _, n := range awkwardLengths {
			a, b := randF32(rng, n), randF32(rng, n)
			_, mag := dotRef(n, func(i int) float64 { return float64(a[i]) }, func(i int) float64 { return float64(b[i]) })
			g, s := generic.dot(a, b), ks.dot(a, b)
			if math.Abs(float64(g-s)) > 2e-5*mag+1e-30 {
				t.Errorf("%s: dot of %d: %v, generic %v", ks.name, n, s, g)
			}
		}
	}
}

func TestKernelChoice(t *testing.T) {
	t.Setenv(GenericEnv, "1")
	if ks := chooseKernels(); ks.name != "generic" {
		t.Errorf("with %s=1 the %s kernels were chosen", GenericEnv, ks.name)
	}
	t.Logf("kernels in use: %s", KernelName())
}

// matRef computes one MatMul output in float64, with its error scale.
func matRef(x []float32, w *Mat, t, r int) (sum, mag float64) {
	c := w.Cols
	wv := func(i int) float64 {
		if w.DType == BF16 {
			return float64(bf16(w.BF16[r*c+i]))
		}
		return float64(w.F32[r*c+i])
	}
	return dotRef(c, wv, func(i int) float64 { return float64(x[t*c+i]) })
}

func randMat(rng *rand.Rand, dt DType, rows, cols int) *Mat {
	m := &Mat{Rows: rows, Cols: cols, DType: dt}
	if dt == BF16 {
		m.BF16 = randBF16(rng, rows*cols)
	} else {
		m.F32 = randF32(rng, rows*cols)
	}
	return m
}

func TestMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	shapes := []struct{ rows, cols, n int }{
		{1, 1, 1}, {3, 5, 1}, {4, 8, 2}, {7, 17, 3}, {13, 33, 4}, {5, 3, 5},
		{128, 384, 1}, {130, 100, 9}, {384, 384, 3}, {67, 1025, 70}, {64, 384, 131},
		{1, 0, 2},
		// small batches (a decode step of several sequences): odd rows, ragged k
		{129, 72, 8}, {65, 390, 12}, {33, 31, 15}, {64, 384, 16}, {3, 7, 6},
	}
	for _, threads := range []int{1, 2, 3} {
		p := NewPool(threads)
		defer p.Close()
		for _, ks := range allSets() {
			for _, dt := range []DType{F32, BF16} {
				for _, s := range shapes {
					w := randMat(rng, dt, s.rows, s.cols)
					x := randF32(rng, s.n*s.cols)
					y := make([]float32, s.n*s.rows+1)
					for i := range y {
						y[i] = 5
					}
					p.matMul(&ks, y[:s.n*s.rows], x, s.n, w)
					for tt := range s.n {
						for r := range s.rows {
							want, mag := matRef(x, w, tt, r)
							if got := y[tt*s.rows+r]; !close32(got, want, mag) {
								t.Fatalf("%d threads, %s, %v %d×%d, n=%d: y[%d][%d] = %v, want %v", threads, ks.name, dt, s.rows, s.cols, s.n, tt, r, got, want)
							}
						}
					}
					if y[s.n*s.rows] != 5 {
						t.Fatalf("%s: MatMul wrote past y", ks.name)
					}
				}
			}
		}
	}
}

func TestMatMulPublic(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	p := NewPool(0)
	defer p.Close()
	w := randMat(rng, BF16, 96, 72)
	x := randF32(rng, 5*72)
	y := make([]float32, 5*96)
	p.MatMul(y, x, 5, w)
	for tt := range 5 {
		for r := range 96 {
			want, mag := matRef(x, w, tt, r)
			if !close32(y[tt*96+r], want, mag) {
				t.Fatalf("y[%d][%d] = %v, want %v", tt, r, y[tt*96+r], want)
			}
		}
	}
	want, mag := dotRef(72, func(i int) float64 { return float64(x[i]) }, func(i int) float64 { return float64(x[72+i]) })
	if got := Dot(x[:72], x[72:]); !close32(got, want, mag) {
		t.Errorf("Dot = %v, want %v", got, want)
	}
}

func TestMatMulAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	p := NewPool(2)
	defer p.Close()
	for _, n := range []int{1, 16} {
		w := randMat(rng, BF16, 256, 384)
		x, y := randF32(rng, n*384), make([]float32, n*256)
		p.MatMul(y, x, n, w) // size the scratch buffers
		if a := testing.AllocsPerRun(100, func() { p.MatMul(y, x, n, w) }); a != 0 {
			t.Errorf("MatMul of %d tokens allocates %v times per call", n, a)
		}
	}
}

func TestPoolFor(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 5} {
		p := NewPool(threads)
		for _, n := range []int{0, 1, 2, 3, 7, 100, 1001} {
			for _, grain := range []int{0, 1, 3, 64, 2000} {
				hits := make([]int32, n)
				workers := make([]bool, threads)
				p.For(n, grain, func(worker, lo, hi int) {
					workers[worker] = true
					for i := lo; i < hi; i++ {
						hits[i]++
					}
				})
				for i, h := range hits {
					if h != 1 {
						t.Fatalf("threads %d, n %d, grain %d: index %d run %d times", threads, n, grain, i, h)
					}
				}
			}
		}
		p.Close()
	}
}

var forSink [64]int

func forBody(worker, lo, hi int) { forSink[worker*8] += hi - lo }

func TestPoolForAllocs(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	if a := testing.AllocsPerRun(1000, func() { p.For(100, 1, forBody) }); a != 0 {
		t.Errorf("For allocates %v times per call", a)
	}
}

// TestPoolConcurrent runs loops from several goroutines at once, with pauses
// long enough for the workers to park between some of them.
func TestPoolConcurrent(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	done := make(chan int)
	for g := range 4 {
		go func() {
			sum := 0
			for i := range 200 {
				var s [2]int
				p.For(10, 1, func(worker, lo, hi int) { s[worker] += hi - lo })
				sum += s[0] + s[1]
				if i%50 == 0 {
					time.Sleep(time.Duration(g+1) * spinWait)
				}
			}
			done <- sum
		}()
	}
	for range 4 {
		if s := <-done; s != 2000 {
			t.Errorf("loops covered %d items, want 2000", s)
		}
	}
}

// BenchmarkPoolFor measures the cost of handing out one parallel loop.
func BenchmarkPoolFor(b *testing.B) {
	p := NewPool(0)
	defer p.Close()
	for b.Loop() {
		p.For(2, 1, forBody)
	}
}

// tinychat's weight shapes: rows × cols.
var tinyShapes = []struct {
	name       string
	rows, cols int
}{
	{"q", 384, 384}, {"kv", 128, 384}, {"gate", 1024, 384}, {"down", 384, 1024}, {"head", 4096, 384},
}

// BenchmarkMatMul runs MatMul at tinychat's shapes with bf16 weights, for one
// token (decode; GB/s counts weight bytes) and 512 tokens (prefill; GFLOP/s).
func BenchmarkMatMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(21, 22))
	p := NewPool(0)
	defer p.Close()
	for _, ks := range allSets() {
		for _, n := range []int{1, 8, 512} {
			for _, s := range tinyShapes {
				if ks.name == "generic" && n == 512 && s.name == "head" {
					continue // slow and says nothing the others don't
				}
				phase := "decode"
				switch {
				case n == 8:
					phase = "batch8"
				case n > 1:
					phase = "prefill"
				}
				b.Run(fmt.Sprintf("%s/%s/%s", ks.name, phase, s.name), func(b *testing.B) {
					w := randMat(rng, BF16, s.rows, s.cols)
					x, y := randF32(rng, n*s.cols), make([]float32, n*s.rows)
					for b.Loop() {
						p.matMul(&ks, y, x, n, w)
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					if n == 1 {
						b.ReportMetric(float64(w.Bytes())/sec/1e9, "GB/s")
					} else {
						b.ReportMetric(2*float64(n*s.rows*s.cols)/sec/1e9, "GFLOP/s")
					}
				})
			}
		}
	}
}

// BenchmarkDecodeStream runs one token through every weight matrix of
// tinychat's 8 layers and its head in turn, 28 MB of bf16 that no core's
// own cache holds, as a decode step does.
func BenchmarkDecodeStream(b *testing.B) {
	rng := rand.New(rand.NewPCG(23, 24))
	p := NewPool(0)
	defer p.Close()
	var mats []*Mat
	var bytes int64
	for range 8 {
		for _, s := range []struct{ rows, cols int }{{384, 384}, {128, 384}, {128, 384}, {384, 384}, {1024, 384}, {1024, 384}, {384, 1024}} {
			m := randMat(rng, BF16, s.rows, s.cols)
			mats = append(mats, m)
			bytes += m.Bytes()
		}
	}
	head := randMat(rng, BF16, 4096, 384)
	mats = append(mats, head)
	bytes += head.Bytes()
	x, y := randF32(rng, 1024), make([]float32, 4096)
	p1 := NewPool(1)
	defer p1.Close()
	for _, ks := range allSets() {
		for _, pool := range []*Pool{p1, p} {
			b.Run(fmt.Sprintf("%s/threads=%d", ks.name, pool.Threads()), func(b *testing.B) {
				for b.Loop() {
					for _, m := range mats {
						pool.matMul(&ks, y, x, 1, m)
					}
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(bytes)/sec/1e9, "GB/s")
			})
		}
	}
}
