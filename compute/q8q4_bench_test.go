package compute

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// BenchmarkQ8Q4 times MatMul on Llama-3.2-1B's shapes with Q8_0 and Q4_0
// weights, two threads, in Fast and Exact numerics: GB/s of weights read
// (the decode measure) and GOP/s (two per multiply-add, the prefill one),
// of the median call and (best-) of the fastest.
//
//	go test ./compute -run X -bench Q8Q4 -count 3
func BenchmarkQ8Q4(b *testing.B) {
	rng := rand.New(rand.NewPCG(135, 136))
	p := NewPool(2)
	defer p.Close()
	for _, dt := range []DType{Q4_0, Q8_0} {
		for _, sh := range [][2]int{{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}} {
			rows, cols := sh[0], sh[1]
			// Copies of the matrix filling 256 MiB, used in turn: decode
			// reads weights from memory, not from the last-level cache.
			size := rows * RowBytes(dt, cols)
			copies := max(1, (256<<20)/size)
			raw := randBlocks(rng, dt, copies*rows, cols)
			ws := make([]*Mat, copies)
			for i := range ws {
				var err error
				part := raw[i*size : (i+1)*size]
				if dt == Q8_0 {
					ws[i], err = NewQ8_0(rows, cols, part)
				} else {
					ws[i], err = NewBlocks(dt, rows, cols, part)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			for _, n := range []int{1, 8, 512} {
				x := randF32(rng, n*cols)
				y := make([]float32, n*rows)
				for _, num := range []Numerics{Fast, Exact} {
					b.Run(fmt.Sprintf("%v/%s/%dx%d/n=%d", dt, num, rows, cols, n), func(b *testing.B) {
						p.SetNumerics(num)
						defer p.SetNumerics(Exact)
						p.MatMul(y, x, n, ws[0])
						times := make([]time.Duration, b.N)
						b.ResetTimer()
						for i := range b.N {
							t0 := time.Now()
							p.MatMul(y, x, n, ws[i%copies])
							times[i] = time.Since(t0)
						}
						b.StopTimer()
						// The median call, and the fastest: on a shared machine
						// the fastest is the closest to an idle one.
						slices.Sort(times)
						for _, m := range []struct {
							prefix string
							d      time.Duration
						}{{"", times[len(times)/2]}, {"best-", times[0]}} {
							sec := m.d.Seconds()
							b.ReportMetric(float64(size)/sec/1e9, m.prefix+"GB/s")
							b.ReportMetric(2*float64(rows)*float64(cols)*float64(n)/sec/1e9, m.prefix+"GOP/s")
						}
					})
				}
			}
		}
	}
}

// BenchmarkQ8Q4PeakRead is the two-thread read bandwidth the decode
// numbers of BenchmarkQ8Q4 compare with: PeakRead over 2 × 128 MiB.
func BenchmarkQ8Q4PeakRead(b *testing.B) {
	const n = 32 << 20 // floats per thread
	bufs := [2][]float32{make([]float32, n), make([]float32, n)}
	for _, x := range bufs {
		for i := range x {
			x[i] = 1
		}
	}
	done := make(chan float32)
	times := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		for _, x := range bufs {
			go func() { done <- PeakRead(x) }()
		}
		<-done
		<-done
		times[i] = time.Since(t0)
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(2*4*n)/times[len(times)/2].Seconds()/1e9, "GB/s")
	b.ReportMetric(float64(2*4*n)/times[0].Seconds()/1e9, "best-GB/s")
}
