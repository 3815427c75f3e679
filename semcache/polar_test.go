package semcache

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestPolar: the factor has orthonormal columns (or rows), and for a
// matrix that is already orthonormal times a positive diagonal it is that
// orthonormal matrix; low-rank inputs are completed to an orthonormal W.
func TestPolar(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		m, n int
		rank int
	}{
		{"square", 6, 6, 6}, {"tall", 9, 4, 4}, {"wide", 3, 7, 3}, {"rank 2 of 5", 5, 5, 2}, {"rank 1 wide", 2, 6, 1},
	}
	for _, tt := range tests {
		// a = B·C with B m×rank, C rank×n.
		b := make([]float64, tt.m*tt.rank)
		c := make([]float64, tt.rank*tt.n)
		for i := range b {
			b[i] = rng.NormFloat64()
		}
		for i := range c {
			c[i] = rng.NormFloat64()
		}
		a := make([]float64, tt.m*tt.n)
		for i := range tt.m {
			for j := range tt.n {
				for k := range tt.rank {
					a[i*tt.n+j] += b[i*tt.rank+k] * c[k*tt.n+j]
				}
			}
		}
		w := polar(a, tt.m, tt.n)
		// WᵀW = I (tall or square) or WWᵀ = I (wide).
		small := min(tt.m, tt.n)
		for p := range small {
			for q := range small {
				var s float64
				for k := range max(tt.m, tt.n) {
					if tt.m >= tt.n {
						s += w[k*tt.n+p] * w[k*tt.n+q]
					} else {
						s += w[p*tt.n+k] * w[q*tt.n+k]
					}
				}
				want := 0.0
				if p == q {
					want = 1
				}
				if math.Abs(s-want) > 1e-9 {
					t.Fatalf("%s: (W·Wᵀ or Wᵀ·W)[%d][%d] = %g, want %g", tt.name, p, q, s, want)
				}
			}
		}
		// The polar factor maximizes trace(Wᵀ·A) over orthonormal maps (it
		// attains Σσ): no sign-flipped copy of W may beat it.
		trace := func(w []float64) float64 {
			var s float64
			for i := range a {
				s += w[i] * a[i]
			}
			return s
		}
		flipped := append([]float64(nil), w...)
		for i := 0; i < len(flipped); i += tt.n {
			flipped[i] = -flipped[i] // negate the first column
		}
		if trace(w) <= 0 || trace(w) < trace(flipped)-1e-9 {
			t.Errorf("%s: trace(WᵀA) = %g, flipped %g", tt.name, trace(w), trace(flipped))
		}
	}
}
