package compute

import (
	"math"
	"testing"
)

func TestPeakProbes(t *testing.T) {
	// Each chain converges to a/(1−m) = 1; the result sums some of them.
	for _, p := range []peakProbes{peakGeneric, peakKernel} {
		v := p.fma(20000)
		if v < 1 || v > 200 || math.Abs(float64(v)-math.Round(float64(v))) > 0.01 {
			t.Errorf("fma(20000) = %g, want a small whole number of converged chains", v)
		}
		x := make([]float32, 1000)
		for i := range x {
			x[i] = float32(i % 7)
		}
		if got, want := p.sum(x), sumGeneric(x); got != want {
			t.Errorf("sum = %g, want %g", got, want)
		}
	}
	if PeakFMA(0) != 0 || PeakFMAFlopsPerIter() <= 0 {
		t.Error("PeakFMA(0) or PeakFMAFlopsPerIter wrong")
	}
}
