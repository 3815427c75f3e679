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
		// The polar factor makes Wᵀ·A (tall or square) or A·Wᵀ (wide)
		// symmetric and positive semidefinite: it is V·Σ·Vᵀ (or U·Σ·Uᵀ).
		k := min(tt.m, tt.n)
		sym := make([]float64, k*k)
		for p := range k {
			for q := range k {
				var v float64
				if tt.m >= tt.n { // (WᵀA)[p][q] = Σ_i W[i][p]·A[i][q]
					for i := range tt.m {
						v += w[i*tt.n+p] * a[i*tt.n+q]
					}
				} else { // (A·Wᵀ)[p][q] = Σ_j A[p][j]·W[q][j]
					for j := range tt.n {
						v += a[p*tt.n+j] * w[q*tt.n+j]
					}
				}
				sym[p*k+q] = v
			}
		}
		for p := range k {
			for q := range k {
				if math.Abs(sym[p*k+q]-sym[q*k+p]) > 1e-8 {
					t.Fatalf("%s: the product is not symmetric at [%d][%d]: %g vs %g", tt.name, p, q, sym[p*k+q], sym[q*k+p])
				}
			}
		}
		for range 10 { // xᵀ·S·x ≥ 0
			x := make([]float64, k)
			for i := range x {
				x[i] = rng.NormFloat64()
			}
			var v float64
			for p := range k {
				for q := range k {
					v += x[p] * sym[p*k+q] * x[q]
				}
			}
			if v < -1e-8 {
				t.Fatalf("%s: the product is not positive semidefinite (xᵀSx = %g)", tt.name, v)
			}
		}
	}
}
