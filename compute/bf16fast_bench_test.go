package compute

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

var (
	bf16PeakOnce sync.Once
	bf16PeakCore float64 // GFLOP/s of one core's VDPBF16PS chains, 0 where absent
)

// bf16PeakPerCore measures PeakBF16Dot on the calling core (best of 3).
func bf16PeakPerCore() float64 {
	bf16PeakOnce.Do(func() {
		if PeakBF16DotFlopsPerIter() == 0 {
			return
		}
		const iters = 1 << 21
		for range 3 {
			t0 := time.Now()
			PeakBF16Dot(iters)
			bf16PeakCore = max(bf16PeakCore, float64(iters)*float64(PeakBF16DotFlopsPerIter())/time.Since(t0).Seconds()/1e9)
		}
	})
	return bf16PeakCore
}

// BenchmarkMatMulBF16 compares Fast and Exact MatMul of BF16 weights on
// Llama-3.2-1B's projection shapes (rows × cols: q/o 2048×2048, k/v
// 512×2048, gate/up 8192×2048, down 2048×8192) for decode (n=1, 8 tokens)
// and prefill (n=512), on 1 and 2 threads. It reports weight GB/s (the
// decode roofline), GFLOP/s and, for Fast, the share of the threads'
// VDPBF16PS peak:
//
//	go test ./compute -run '^$' -bench MatMulBF16 -count 3
func BenchmarkMatMulBF16(b *testing.B) {
	rng := rand.New(rand.NewPCG(135, 136))
	peak := bf16PeakPerCore()
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
