package compute

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// bf16PeakPerCore measures PeakBF16Dot on the calling goroutine's core,
// best of 5 runs of about a millisecond, in GFLOP/s (0 where absent). The
// benchmarks measure it just before each Fast run, so that both see the
// same share of a machine shared with other work.
func bf16PeakPerCore() float64 {
	per := PeakBF16DotFlopsPerIter()
	if per == 0 {
		return 0
	}
	const iters = 1 << 18
	best := 0.0
	for range 5 {
		t0 := time.Now()
		PeakBF16Dot(iters)
		best = max(best, float64(iters)*float64(per)/time.Since(t0).Seconds()/1e9)
	}
	return best
}

// BenchmarkMatMulBF16 compares Fast and Exact MatMul of BF16 weights on
// Llama-3.2-1B's projection shapes (rows × cols: q/o 2048×2048, k/v
// 512×2048, gate/up 8192×2048, down 2048×8192) for decode (n=1, 8 tokens)
// and prefill (n=512), on 1 and 2 threads. It reports weight GB/s (the
// decode roofline), GFLOP/s and, for Fast, the share of the VDPBF16PS
// peak (one core's, measured just before, times the threads):
//
//	go test ./compute -run '^$' -bench MatMulBF16 -count 3
func BenchmarkMatMulBF16(b *testing.B) {
	rng := rand.New(rand.NewPCG(135, 136))
	for _, threads := range []int{1, 2} {
		pool := NewPool(threads)
		for _, sh := range []struct{ rows, cols int }{{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}} {
			w := randMat(rng, BF16, sh.rows, sh.cols)
			for _, n := range []int{1, 8, 512} {
				x := randF32(rng, n*sh.cols)
				y := make([]float32, n*sh.rows)
				for _, num := range []Numerics{Fast, Exact} {
					b.Run(fmt.Sprintf("t%d/%dx%d/n%d/%v", threads, sh.rows, sh.cols, n, num), func(b *testing.B) {
						pool.SetNumerics(num)
						pool.MatMul(y, x, n, w)
						peak := bf16PeakPerCore()
						t0 := time.Now()
						for b.Loop() {
							pool.MatMul(y, x, n, w)
						}
						s := time.Since(t0).Seconds() / float64(b.N)
						flops := 2 * float64(sh.rows*sh.cols*n)
						b.ReportMetric(float64(2*sh.rows*sh.cols)/s/1e9, "wGB/s")
						b.ReportMetric(flops/s/1e9, "GFLOP/s")
						if num == Fast && peak > 0 {
							b.ReportMetric(100*flops/s/1e9/(peak*float64(threads)), "%peak")
						}
					})
				}
			}
		}
		pool.Close()
	}
}

// BenchmarkBF16FastVsPeak runs Fast MatMul of BF16 weights on one thread
// in alternation with PeakBF16Dot of the same flops, so that both see the
// same share of a machine shared with other work, and reports the
// MatMul's speed as a share of the probe's (%peak) beside both speeds:
//
//	go test ./compute -run '^$' -bench BF16FastVsPeak -count 3
func BenchmarkBF16FastVsPeak(b *testing.B) {
	per := PeakBF16DotFlopsPerIter()
	if per == 0 || !kernels.fast(BF16) {
		b.Skip("no VDPBF16PS kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(137, 138))
	pool := NewPool(1)
	defer pool.Close()
	pool.SetNumerics(Fast)
	for _, sh := range []struct{ rows, cols int }{{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}} {
		w := randMat(rng, BF16, sh.rows, sh.cols)
		for _, n := range []int{8, 64, 512} {
			x := randF32(rng, n*sh.cols)
			y := make([]float32, n*sh.rows)
			flops := 2 * float64(sh.rows*sh.cols*n)
			iters := max(1, int(flops)/per)
			b.Run(fmt.Sprintf("%dx%d/n%d", sh.rows, sh.cols, n), func(b *testing.B) {
				var tm, tp time.Duration
				for b.Loop() {
					t0 := time.Now()
					pool.MatMul(y, x, n, w)
					t1 := time.Now()
					PeakBF16Dot(iters)
					tm += t1.Sub(t0)
					tp += time.Since(t1)
				}
				b.ReportMetric(100*tp.Seconds()/tm.Seconds(), "%peak")
				b.ReportMetric(flops*float64(b.N)/tm.Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(float64(iters*per)*float64(b.N)/tp.Seconds()/1e9, "peakGFLOP/s")
			})
		}
	}
}
