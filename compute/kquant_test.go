package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvserve/kvserve/gguf"
)

// kquantShapes are the awkward shapes the K-quant kernels are checked on:
// rows around the kernels' pairs and the pool's 64-row chunks, token
// counts around the kernels' groups of 8, and row lengths up to 8192.
var kquantShapes = []struct{ rows, cols, n int }{
	{1, 256, 1}, {2, 256, 1}, {3, 512, 1}, {5, 256, 2}, {7, 768, 3}, {17, 256, 4},
	{9, 1024, 5}, {4, 256, 6}, {33, 512, 7}, {64, 256, 8}, {65, 512, 9}, {3, 2048, 9},
	{11, 256, 16}, {6, 512, 17}, {13, 256, 70}, {2, 8192, 1}, {5, 8192, 8}, {3, 4096, 17},
	{5, 2304, 9}, {4, 4352, 1}, {3, 4352, 2},
}

// TestKQuantKernels checks every set's Q4_K and Q6_K kernel, called
// directly with a row stride larger than rows, against a float64 sum over
// the gguf package's dequantized weights and the quantized activations;
// the gaps of y must stay untouched.
func TestKQuantKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(131, 132))
	for _, dt := range []DType{Q4_K, Q6_K} {
		for _, s := range kquantShapes {
			raw := randBlocks(rng, dt, s.rows, s.cols)
			wf := make([]float32, s.rows*s.cols)
			if err := gguf.DequantizeRow(ggufType[dt], raw, wf); err != nil {
				t.Fatal(err)
			}
			x := randF32(rng, s.n*s.cols)
			for i := range x { // rows of very different magnitudes
				x[i] *= float32(math.Pow(10, float64(i/s.cols%3)-1))
			}
			var a qact
			a.reset(s.n, s.cols)
			quantizeActGeneric(&a, x, 0, s.n)
			ldy := s.rows + 3
			for _, ks := range allSets() {
				name := fmt.Sprintf("%s %v %d×%d n=%d", ks.name, dt, s.rows, s.cols, s.n)
				y := make([]float32, s.n*ldy)
				for i := range y {
					y[i] = 7
				}
				ks.matQ(dt)(y, ldy, raw, s.rows, &a, s.n)
				for tt := range s.n {
					for r := range ldy {
						got := y[tt*ldy+r]
						if r >= s.rows {
							if got != 7 {
								t.Fatalf("%s: wrote y[%d][%d] past rows", name, tt, r)
							}
							continue
						}
						want, mag := dotRef(s.cols, func(i int) float64 { return float64(wf[r*s.cols+i]) }, func(i int) float64 {
							e := tt*s.cols + i
							return float64(a.d[e/ActBlock]) * float64(a.q[e])
						})
						if math.Abs(float64(got)-want) > 2e-5*mag+1e-30 {
							t.Fatalf("%s: y[%d][%d] = %v, want %v (scale %v)", name, tt, r, got, want, mag)
						}
					}
				}
			}
		}
	}
}

// TestKQuantMatMulFast runs the K-quant kernels through Pool.MatMul in
// Fast numerics, on shapes that split into several 64-row chunks, against
// the float64 reference.
func TestKQuantMatMulFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(133, 134))
	p := NewPool(2)
	defer p.Close()
	p.SetNumerics(Fast)
	for _, dt := range []DType{Q4_K, Q6_K} {
		for _, s := range []struct{ rows, cols, n int }{{130, 512, 1}, {129, 256, 8}, {200, 768, 19}} {
			raw := randBlocks(rng, dt, s.rows, s.cols)
			w := blockMat(t, dt, s.rows, s.cols, raw)
			wf := make([]float32, s.rows*s.cols)
			if err := gguf.DequantizeRow(ggufType[dt], raw, wf); err != nil {
				t.Fatal(err)
			}
			x := randF32(rng, s.n*s.cols)
			for _, ks := range allSets() {
				y := make([]float32, s.n*s.rows)
				p.matMul(&ks, y, x, s.n, w)
				for tt := range s.n {
					xq := quantizeRef(x[tt*s.cols : (tt+1)*s.cols])
					for r := range s.rows {
						want, mag := dotRef(s.cols, func(i int) float64 { return float64(wf[r*s.cols+i]) }, func(i int) float64 { return xq[i] })
						if got := y[tt*s.rows+r]; math.Abs(float64(got)-want) > 2e-5*mag+1e-30 {
							t.Fatalf("%s %v %d×%d n=%d: y[%d][%d] = %v, want %v (scale %v)", ks.name, dt, s.rows, s.cols, s.n, tt, r, got, want, mag)
						}
					}
				}
			}
		}
	}
}

// TestKQuantWiden checks the widening kernels against the generic ones bit
// for bit, on lengths of 1 to 9 blocks.
func TestKQuantWiden(t *testing.T) {
	rng := rand.New(rand.NewPCG(135, 136))
	for _, dt := range []DType{Q4_K, Q6_K} {
		for nb := 1; nb <= 9; nb++ {
			raw := randBlocks(rng, dt, 1, nb*QKBlock)
			want := make([]float32, nb*QKBlock)
			generic.widen(dt)(want, raw)
			for _, ks := range simdSets() {
				got := make([]float32, nb*QKBlock+1)
				got[nb*QKBlock] = 3
				ks.widen(dt)(got[:nb*QKBlock], raw)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s %v %d blocks: element %d = %v, generic %v", ks.name, dt, nb, i, got[i], want[i])
					}
				}
				if got[nb*QKBlock] != 3 {
					t.Fatalf("%s %v: wrote past dst", ks.name, dt)
				}
			}
		}
	}
}

// kquantBenchShapes are Llama-3.2-1B's matrices (rows × cols: q/o
// projections, k/v projections, gate/up, down, and the output matrix,
// which Q4_K_M files keep in Q6_K) with the token counts benchmarked.
var kquantBenchShapes = []struct {
	dt         DType
	rows, cols int
	ns         []int
}{
	{Q4_K, 2048, 2048, []int{1, 8, 512}},
	{Q4_K, 512, 2048, []int{1, 8, 512}},
	{Q4_K, 8192, 2048, []int{1, 8, 512}},
	{Q4_K, 2048, 8192, []int{1, 8, 512}},
	{Q6_K, 2048, 8192, []int{1, 8, 512}},
	{Q6_K, 512, 2048, []int{1, 8, 512}},
	{Q6_K, 128256, 2048, []int{1}},
}

// reportKQuant reports weight bytes read per second (GB/s) and integer
// operations (2 per multiply-add) per second (GOP/s).
func reportKQuant(b *testing.B, w *Mat, n int) {
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(len(w.Blocks))/sec/1e9, "GB/s")
	b.ReportMetric(2*float64(w.Rows)*float64(w.Cols)*float64(n)/sec/1e9, "GOP/s")
}

// BenchmarkKQuantMatMul times Pool.MatMul in Fast numerics with two threads
// on Q4_K and Q6_K weights of Llama-3.2-1B's shapes: activation rounding
// included.
func BenchmarkKQuantMatMul(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	p.SetNumerics(Fast)
	rng := rand.New(rand.NewPCG(137, 138))
	for _, s := range kquantBenchShapes {
		w, err := NewBlocks(s.dt, s.rows, s.cols, randBlocks(rng, s.dt, s.rows, s.cols))
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range s.ns {
			x := randF32(rng, n*s.cols)
			y := make([]float32, n*s.rows)
			b.Run(fmt.Sprintf("%v/%dx%d/n=%d", s.dt, s.rows, s.cols, n), func(b *testing.B) {
				for b.Loop() {
					p.MatMul(y, x, n, w)
				}
				reportKQuant(b, w, n)
			})
		}
	}
}

// BenchmarkKQuantKernel is BenchmarkKQuantMatMul without the activation
// rounding: the activations are quantized once, and two goroutines run the
// kernel in use over halves of the rows in the pool's 64-row chunks.
func BenchmarkKQuantKernel(b *testing.B) {
	rng := rand.New(rand.NewPCG(139, 140))
	for _, s := range kquantBenchShapes {
		w, err := NewBlocks(s.dt, s.rows, s.cols, randBlocks(rng, s.dt, s.rows, s.cols))
		if err != nil {
			b.Fatal(err)
		}
		rb := RowBytes(s.dt, s.cols)
		kern := kernels.matQ(s.dt)
		for _, n := range s.ns {
			var a qact
			a.reset(n, s.cols)
			quantizeActGeneric(&a, randF32(rng, n*s.cols), 0, n)
			y := make([]float32, n*s.rows)
			b.Run(fmt.Sprintf("%v/%dx%d/n=%d", s.dt, s.rows, s.cols, n), func(b *testing.B) {
				best := time.Duration(math.MaxInt64)
				for b.Loop() {
					t0 := time.Now()
					var wg sync.WaitGroup
					for h := range 2 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							lo, hi := h*s.rows/2/fastRows*fastRows, s.rows
							if h == 0 {
								hi = s.rows / 2 / fastRows * fastRows
							}
							for r := lo; r < hi; r += fastRows {
								nr := min(fastRows, hi-r)
								kern(y[r:], s.rows, w.Blocks[r*rb:(r+nr)*rb], nr, &a, n)
							}
						}()
					}
					wg.Wait()
					best = min(best, time.Since(t0))
				}
				reportKQuant(b, w, n)
				// The fastest call: on a shared machine, the least disturbed.
				b.ReportMetric(float64(len(w.Blocks))/best.Seconds()/1e9, "best-GB/s")
				b.ReportMetric(2*float64(w.Rows)*float64(w.Cols)*float64(n)/best.Seconds()/1e9, "best-GOP/s")
			})
		}
	}
}

// BenchmarkKQuantPeakRead is the 2-thread read bandwidth the decode numbers
// compare with: PeakRead over 256 MiB split between two goroutines, as
// `kvserve bench perf` measures it.
func BenchmarkKQuantPeakRead(b *testing.B) {
	buf := make([]float32, 64<<20)
	for i := range buf {
		buf[i] = float32(i & 7)
	}
	var sink [2]float32
	for b.Loop() {
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sink[i] += PeakRead(buf[i*len(buf)/2 : (i+1)*len(buf)/2])
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(len(buf)*4)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GB/s")
	if sink[0] == 1 {
		b.Log(sink)
	}
}

// BenchmarkKQuantDecode compares decode on matrices far larger than the
// caches with the machine's read bandwidth, alternating the two in every
// round so that other load on a shared machine hits both alike: the Q6_K
// output matrix of Llama-3.2-1B (128256 × 2048, 215 MB) and a Q4_K matrix
// of 65536 × 2048 (75 MB, the size of about 14 of its 2048 × 2048
// projections), each at n = 1 and n = 8 in Fast numerics with two
// threads. It reports each MatMul's weight GB/s at n = 1 as a percentage
// of PeakRead's over 256 MiB (medians over rounds), and the time of n = 8
// over the time of n = 1.
func BenchmarkKQuantDecode(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	p.SetNumerics(Fast)
	rng := rand.New(rand.NewPCG(141, 142))
	buf := make([]float32, 64<<20)
	for i := range buf {
		buf[i] = float32(i & 7)
	}
	read := func() time.Duration {
		t0 := time.Now()
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if PeakRead(buf[i*len(buf)/2:(i+1)*len(buf)/2]) == -1 {
					b.Log("unreachable")
				}
			}()
		}
		wg.Wait()
		return time.Since(t0)
	}
	mats := []struct {
		name string
		w    *Mat
	}{}
	for _, s := range []struct {
		name       string
		dt         DType
		rows, cols int
	}{{"q6k", Q6_K, 128256, 2048}, {"q4k", Q4_K, 65536, 2048}} {
		w, err := NewBlocks(s.dt, s.rows, s.cols, randBlocks(rng, s.dt, s.rows, s.cols))
		if err != nil {
			b.Fatal(err)
		}
		mats = append(mats, struct {
			name string
			w    *Mat
		}{s.name, w})
	}
	x := randF32(rng, 8*2048)
	y := make([]float32, 8*128256)
	pct := make([][]float64, len(mats))
	batch := make([][]float64, len(mats))
	var readGBs []float64
	for b.Loop() {
		tr := read()
		readGBs = append(readGBs, float64(len(buf)*4)/tr.Seconds()/1e9)
		for i, m := range mats {
			t0 := time.Now()
			p.MatMul(y[:m.w.Rows], x[:2048], 1, m.w)
			t1 := time.Since(t0)
			t0 = time.Now()
			p.MatMul(y[:8*m.w.Rows], x, 8, m.w)
			t8 := time.Since(t0)
			gbs := float64(len(m.w.Blocks)) / t1.Seconds() / 1e9
			pct[i] = append(pct[i], 100*gbs/readGBs[len(readGBs)-1])
			batch[i] = append(batch[i], t8.Seconds()/t1.Seconds())
		}
	}
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.ReportMetric(median(readGBs), "read-GB/s")
	for i, m := range mats {
		b.ReportMetric(median(pct[i]), m.name+"-%read")
		b.ReportMetric(median(batch[i]), m.name+"-n8/n1")
	}
}

// BenchmarkKQuantKernel1T times the kernel in use on one thread for one
// 64-row chunk of 2048 columns (weights in cache), the unit MatMul's
// workers run, and reports the fastest call per weight row, 256-column
// block and token (best-ns/block), and as weight GB/s and GOP/s.
func BenchmarkKQuantKernel1T(b *testing.B) {
	rng := rand.New(rand.NewPCG(143, 144))
	const rows, cols = fastRows, 2048
	for _, dt := range []DType{Q4_K, Q6_K} {
		raw := randBlocks(rng, dt, rows, cols)
		kern := kernels.matQ(dt)
		for _, n := range []int{1, 8, 64} {
			var a qact
			a.reset(n, cols)
			quantizeActGeneric(&a, randF32(rng, n*cols), 0, n)
			y := make([]float32, n*rows)
			b.Run(fmt.Sprintf("%v/n=%d", dt, n), func(b *testing.B) {
				best := time.Duration(math.MaxInt64)
				for b.Loop() {
					t0 := time.Now()
					kern(y, rows, raw, rows, &a, n)
					best = min(best, time.Since(t0))
				}
				blocks := float64(rows * cols / QKBlock * n)
				b.ReportMetric(float64(best.Nanoseconds())/blocks, "best-ns/block")
				b.ReportMetric(float64(len(raw))/best.Seconds()/1e9, "best-GB/s")
				b.ReportMetric(2*float64(rows*cols*n)/best.Seconds()/1e9, "best-GOP/s")
			})
		}
	}
}
