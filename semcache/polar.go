package semcache

import "math"

// polar returns the orthonormal polar factor W = U·Vᵀ of the m×n matrix a
// (row-major) for its thin SVD a = U·Σ·Vᵀ: the matrix with orthonormal
// columns (m ≥ n) or rows (m < n) nearest to a. It uses one-sided Jacobi
// rotations (Hestenes): columns of a are rotated pairwise until they are
// orthogonal, the rotations gathered in V; then a·V = U·Σ. Directions
// with no singular value (a rank below min(m, n), as when fewer pairs than
// dimensions are fitted) get orthonormal completions, so W stays
// orthonormal, as a full SVD would give.
func polar(a []float64, m, n int) []float64 {
	if m < n { // W(a) = W(aᵀ)ᵀ
		return transpose(polar(transpose(a, m, n), n, m), n, m)
	}
	u := append([]float64(nil), a...) // m×n, its columns rotated
	v := make([]float64, n*n)
	for i := range n {
		v[i*n+i] = 1
	}
	col := func(x []float64, rows, cols, j int, f func(i int, p *float64)) {
		for i := range rows {
			f(i, &x[i*cols+j])
		}
	}
	for sweep := 0; sweep < 60; sweep++ {
		rotated := false
		for p := 0; p < n-1; p++ {
			for q := p + 1; q < n; q++ {
				var alpha, beta, gamma float64
				for i := range m {
					x, y := u[i*n+p], u[i*n+q]
					alpha += x * x
					beta += y * y
					gamma += x * y
				}
				if gamma == 0 || math.Abs(gamma) <= 1e-15*math.Sqrt(alpha*beta) {
					continue
				}
				rotated = true
				zeta := (beta - alpha) / (2 * gamma)
				t := math.Copysign(1, zeta) / (math.Abs(zeta) + math.Sqrt(1+zeta*zeta))
				c := 1 / math.Sqrt(1+t*t)
				s := c * t
				rot := func(x []float64, rows int) {
					for i := range rows {
						xp, xq := x[i*n+p], x[i*n+q]
						x[i*n+p], x[i*n+q] = c*xp-s*xq, s*xp+c*xq
					}
				}
				rot(u, m)
				rot(v, n)
			}
		}
		if !rotated {
			break
		}
	}
	// Columns of u are σ_j·U_j: normalize; complete the null ones.
	var norms []float64
	largest := 0.0
	for j := range n {
		var s float64
		col(u, m, n, j, func(_ int, p *float64) { s += *p * *p })
		norms = append(norms, math.Sqrt(s))
		largest = max(largest, norms[j])
	}
	var null []int
	for j := range n {
		if norms[j] <= 1e-12*largest || norms[j] == 0 {
			null = append(null, j)
			continue
		}
		inv := 1 / norms[j]
		col(u, m, n, j, func(_ int, p *float64) { *p *= inv })
	}
	for _, j := range null {
		complete(u, m, n, j, norms, null)
	}
	// W = U·Vᵀ.
	w := make([]float64, m*n)
	for i := range m {
		for k := range n {
			var s float64
			for j := range n {
				s += u[i*n+j] * v[k*n+j]
			}
			w[i*n+k] = s
		}
	}
	return w
}

// complete sets column j of u (m×n) to a unit vector orthogonal to every
// column already set: the first basis vector whose remainder after
// Gram-Schmidt is not negligible.
func complete(u []float64, m, n, j int, norms []float64, null []int) {
	pending := map[int]bool{}
	for _, k := range null {
		if k >= j {
			pending[k] = true
		}
	}
	for e := range m {
		x := make([]float64, m)
		x[e] = 1
		for k := range n {
			if k == j || pending[k] {
				continue
			}
			var d float64
			for i := range m {
				d += x[i] * u[i*n+k]
			}
			for i := range m {
				x[i] -= d * u[i*n+k]
			}
		}
		var s float64
		for _, y := range x {
			s += y * y
		}
		if s > 1e-6 {
			s = math.Sqrt(s)
			for i := range m {
				u[i*n+j] = x[i] / s
			}
			return
		}
	}
}

// transpose returns the n×m transpose of the m×n matrix a.
func transpose(a []float64, m, n int) []float64 {
	t := make([]float64, len(a))
	for i := range m {
		for j := range n {
			t[j*m+i] = a[i*n+j]
		}
	}
	return t
}
