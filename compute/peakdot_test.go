package compute

import (
	"testing"
	"time"
)

func TestPeakDotProbes(t *testing.T) {
	if PeakBF16Dot(0) != 0 || PeakInt8Dot(0) != 0 || PeakBF16Dot(-3) != 0 {
		t.Error("a probe of no iterations returned non-zero")
	}
	for _, iters := range []int{1, 7, 1000} {
		if PeakBF16DotFlopsPerIter() > 0 {
			// 16 chains of 2·2^-10·2^-10 per iteration, exact in float32.
			if got, want := PeakBF16Dot(iters), float32(16*iters)/(1<<19); got != want {
				t.Errorf("PeakBF16Dot(%d) = %g, want %g", iters, got, want)
			}
		}
		if PeakInt8DotOpsPerIter() > 0 {
			if got, want := PeakInt8Dot(iters), int32(128*iters); got != want {
				t.Errorf("PeakInt8Dot(%d) = %d, want %d", iters, got, want)
			}
		}
	}
}

// BenchmarkPeakDot reports one core's dot-product peaks next to the fp32
// FMA peak (go test -bench PeakDot ./compute).
func BenchmarkPeakDot(b *testing.B) {
	for _, p := range []struct {
		name    string
		perIter int
		run     func(int)
	}{
		{"fma-fp32", PeakFMAFlopsPerIter(), func(n int) { PeakFMA(n) }},
		{"vdpbf16ps", PeakBF16DotFlopsPerIter(), func(n int) { PeakBF16Dot(n) }},
		{"vpdpbusd", PeakInt8DotOpsPerIter(), func(n int) { PeakInt8Dot(n) }},
	} {
		b.Run(p.name, func(b *testing.B) {
			if p.perIter == 0 {
				b.Skip("not on this CPU")
			}
			const iters = 1 << 20
			t0 := time.Now()
			for b.Loop() {
				p.run(iters)
			}
			b.ReportMetric(float64(b.N)*iters*float64(p.perIter)/time.Since(t0).Seconds()/1e9, "Gop/s")
		})
	}
}
