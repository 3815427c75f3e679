//go:build amd64 && !purego

package compute

// Go halves of the AVX2 exp, attention and Q8_0 kernels. As in
// kernels_amd64.go, the wrappers check bounds, pass the assembly only
// columns in multiples of 8 and do the rest in Go, and never pass a pointer
// into an empty slice.

//go:noescape
func expSumAVX2(dst, src *float32, n int, m float32) float32

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func scalAVX2(x *float32, a float32, n int)

//go:noescape
func scoresAVX2(dst, q, k *float32, ldk, cols, rows int, scale float32)

//go:noescape
func scoresBF16AVX2(dst, q *float32, k *uint16, ldk, cols, rows int, scale float32)

//go:noescape
func scores3AVX2(dst *float32, ldd int, q *float32, ldq int, k *float32, ldk, cols, rows int, scale float32)

//go:noescape
func scoresT24AVX2(dst *float32, ldd int, qt, k *float32, ldk, d, rows int, scale float32)

//go:noescape
func mixAVX2(out, p, v *float32, ldv, cols, rows int)

//go:noescape
func mixBF16AVX2(out, p *float32, v *uint16, ldv, cols, rows int)

//go:noescape
func mix3AVX2(out *float32, ldo int, p *float32, ldp int, v *float32, ldv, cols, rows int)

//go:noescape
func dotQ8RowsAVX2(d *float32, w *byte, x *float32, nb, rows int)

//go:noescape
func q8ToF32AVX2(dst *float32, src *byte, nb int)

// attnChunkBytes is how many bytes of keys or values the multi-query
// kernels work through for every group of queries before moving on, so
// that the block stays in the core's L1/L2 cache while the groups reuse it.
const attnChunkBytes = 32 << 10

func expSumAVX2Go(dst, src []float32, m float32) float32 {
	n := len(src)
	dst = dst[:n]
	k := n &^ 7
	var s float32
	if k > 0 {
		s = expSumAVX2(&dst[0], &src[0], k, m)
	}
	if k < n {
		// Run the last few through the same kernel, for the same results.
		var buf [8]float32
		copy(buf[:], src[k:])
		expSumAVX2(&buf[0], &buf[0], 8, m)
		for i, e := range buf[:n-k] {
			dst[k+i] = e
			s += e
		}
	}
	return s
}

func maxAVX2Go(x []float32) float32 {
	n := len(x)
	k := n &^ 7
	m := x[0]
	if k > 0 {
		m = maxAVX2(&x[0], k)
	}
	for _, v := range x[k:] {
		m = max(m, v)
	}
	return m
}

func scalAVX2Go(x []float32, a float32) {
	n := len(x)
	k := n &^ 7
	if k > 0 {
		scalAVX2(&x[0], a, k)
	}
	for i := k; i < n; i++ {
		x[i] *= a
	}
}

func scoresAVX2Go(dst, q, k []float32, scale float32) {
	d, rows := len(q), len(dst)
	m := d &^ 7
	if rows == 0 || m == 0 {
		scoresGeneric(dst, q, k, scale)
		return
	}
	k = k[:rows*d]
	if m == d {
		scoresAVX2(&dst[0], &q[0], &k[0], d, m, rows, scale)
		return
	}
	scoresAVX2(&dst[0], &q[0], &k[0], d, m, rows, 1)
	for j := range dst {
		s := dst[j]
		for c := m; c < d; c++ {
			s += q[c] * k[j*d+c]
		}
		dst[j] = s * scale
	}
}

func scoresBF16AVX2Go(dst, q []float32, k []uint16, scale float32) {
	d, rows := len(q), len(dst)
	m := d &^ 7
	if rows == 0 || m == 0 {
		scoresBF16Generic(dst, q, k, scale)
		return
	}
	k = k[:rows*d]
	if m == d {
		scoresBF16AVX2(&dst[0], &q[0], &k[0], d, m, rows, scale)
		return
	}
	scoresBF16AVX2(&dst[0], &q[0], &k[0], d, m, rows, 1)
	for j := range dst {
		s := dst[j]
		for c := m; c < d; c++ {
			s += q[c] * bf16(k[j*d+c])
		}
		dst[j] = s * scale
	}
}

// t24MaxDim is the largest query size scoresMultiAVX2Go packs for the
// 24-query kernel, in a buffer on its stack.
const t24MaxDim = 256

// scoresMultiAVX2Go hands groups of 24 queries to the 24-query × 4-key
// kernel, one group at a time against all the keys, and the rest to
// scores3AVX2Go. ldDst ≥ rows when nq > 1.
func scoresMultiAVX2Go(dst []float32, ldDst int, q []float32, nq, d int, k []float32, rows int, scale float32) {
	if nq < 24 || rows < 4 || d > t24MaxDim || d == 0 {
		scores3AVX2Go(dst, ldDst, q, nq, d, k, rows, scale)
		return
	}
	_, _, _ = dst[(nq-1)*ldDst+rows-1], q[nq*d-1], k[rows*d-1] // bounds
	nq24, rows4 := nq/24*24, rows&^3
	var qt [24 * t24MaxDim]float32
	for i0 := 0; i0 < nq24; i0 += 24 {
		for i := range 24 {
			for c, v := range q[(i0+i)*d : (i0+i+1)*d] {
				qt[c*24+i] = v
			}
		}
		scoresT24AVX2(&dst[i0*ldDst], ldDst, &qt[0], &k[0], d, d, rows4, scale)
	}
	if rows4 < rows {
		scores3AVX2Go(dst[rows4:], ldDst, q, nq24, d, k[rows4*d:], rows-rows4, scale)
	}
	if nq24 < nq {
		scores3AVX2Go(dst[nq24*ldDst:], ldDst, q[nq24*d:], nq-nq24, d, k, rows, scale)
	}
}

// scores3AVX2Go runs the 3-query × 4-key kernel over a chunk of keys for
// every group of three queries, then the next chunk; leftover queries and
// keys go through the one-query kernel. ldDst ≥ rows when nq > 1.
func scores3AVX2Go(dst []float32, ldDst int, q []float32, nq, d int, k []float32, rows int, scale float32) {
	m := d &^ 7
	if nq <= 0 || rows <= 0 || m == 0 {
		scoresMultiGeneric(dst, ldDst, q, nq, d, k, rows, scale)
		return
	}
	_, _, _ = dst[(nq-1)*ldDst+rows-1], q[nq*d-1], k[rows*d-1] // bounds
	s := scale
	if m != d {
		s = 1 // scaled below, with the last columns
	}
	kc := max(4, attnChunkBytes/(4*d)) &^ 3
	for j0 := 0; j0 < rows; j0 += kc {
		nr := min(kc, rows-j0)
		nr4, nq3 := nr&^3, 0
		if nr4 > 0 {
			nq3 = nq / 3 * 3
			for i := 0; i < nq3; i += 3 {
				scores3AVX2(&dst[i*ldDst+j0], ldDst, &q[i*d], d, &k[j0*d], d, m, nr4, s)
			}
			if nr4 < nr {
				for i := range nq3 {
					scoresAVX2(&dst[i*ldDst+j0+nr4], &q[i*d], &k[(j0+nr4)*d], d, m, nr-nr4, s)
				}
			}
		}
		for i := nq3; i < nq; i++ {
			scoresAVX2(&dst[i*ldDst+j0], &q[i*d], &k[j0*d], d, m, nr, s)
		}
	}
	if m == d {
		return
	}
	for i := range nq {
		qi, di := q[i*d:(i+1)*d], dst[i*ldDst:i*ldDst+rows]
		for j := range di {
			kj, t := k[j*d:(j+1)*d], di[j]
			for c := m; c < d; c++ {
				t += qi[c] * kj[c]
			}
			di[j] = t * scale
		}
	}
}

func mixRowsAVX2Go(out, p, v []float32) {
	d, rows := len(out), len(p)
	m := d &^ 7
	if rows == 0 || m == 0 {
		mixRowsGeneric(out, p, v)
		return
	}
	v = v[:rows*d]
	mixAVX2(&out[0], &p[0], &v[0], d, m, rows)
	for c := m; c < d; c++ {
		s := out[c]
		for j, pj := range p {
			s += pj * v[j*d+c]
		}
		out[c] = s
	}
}

func mixRowsBF16AVX2Go(out, p []float32, v []uint16) {
	d, rows := len(out), len(p)
	m := d &^ 7
	if rows == 0 || m == 0 {
		mixRowsBF16Generic(out, p, v)
		return
	}
	v = v[:rows*d]
	mixBF16AVX2(&out[0], &p[0], &v[0], d, m, rows)
	for c := m; c < d; c++ {
		s := out[c]
		for j, pj := range p {
			s += pj * bf16(v[j*d+c])
		}
		out[c] = s
	}
}

// mixRowsMultiAVX2Go runs the 3-query kernel over 32-column strips of a
// chunk of value rows for every group of three queries, then the next
// chunk; leftover queries and columns go through the one-query kernel.
// ldOut ≥ d when nq > 1.
func mixRowsMultiAVX2Go(out []float32, ldOut int, p []float32, ldP, nq, d int, v []float32, rows int) {
	m := d &^ 7
	if nq <= 0 || rows <= 0 || m == 0 {
		mixRowsMultiGeneric(out, ldOut, p, ldP, nq, d, v, rows)
		return
	}
	_, _, _ = out[(nq-1)*ldOut+d-1], p[(nq-1)*ldP+rows-1], v[rows*d-1] // bounds
	m32 := d &^ 31
	rc := max(1, attnChunkBytes/(4*d))
	for j0 := 0; j0 < rows; j0 += rc {
		nr := min(rc, rows-j0)
		i := 0
		if m32 > 0 {
			for ; i+3 <= nq; i += 3 {
				mix3AVX2(&out[i*ldOut], ldOut, &p[i*ldP+j0], ldP, &v[j0*d], d, m32, nr)
				if m32 < m {
					for ii := i; ii < i+3; ii++ {
						mixAVX2(&out[ii*ldOut+m32], &p[ii*ldP+j0], &v[j0*d+m32], d, m-m32, nr)
					}
				}
			}
		}
		for ; i < nq; i++ {
			mixAVX2(&out[i*ldOut], &p[i*ldP+j0], &v[j0*d], d, m, nr)
		}
	}
	if m == d {
		return
	}
	for i := range nq {
		oi, pi := out[i*ldOut:i*ldOut+d], p[i*ldP:i*ldP+rows]
		for c := m; c < d; c++ {
			s := oi[c]
			for j, pj := range pi {
				s += pj * v[j*d+c]
			}
			oi[c] = s
		}
	}
}

func dotQ8AVX2Go(d []float32, w []byte, x []float32, k int) {
	rows, nb := len(d), k/Q8Block
	if rows == 0 || nb == 0 {
		clear(d)
		return
	}
	_, _ = w[rows*nb*Q8BlockBytes-1], x[nb*Q8Block-1] // bounds
	dotQ8RowsAVX2(&d[0], &w[0], &x[0], nb, rows)
}

func q8ToF32AVX2Go(dst []float32, src []byte) {
	nb := len(dst) / Q8Block
	if nb == 0 {
		return
	}
	_ = src[nb*Q8BlockBytes-1] // bounds
	q8ToF32AVX2(&dst[0], &src[0], nb)
}

//go:noescape
func siluMulAVX2(gate, up *float32, n int)

func siluMulAVX2Go(gate, up []float32) {
	n := len(gate)
	up = up[:n]
	k := n &^ 7
	if k > 0 {
		siluMulAVX2(&gate[0], &up[0], k)
	}
	if k < n {
		// The last few go through the same kernel, for the same results.
		var g, u [8]float32
		copy(g[:], gate[k:])
		copy(u[:], up[k:])
		siluMulAVX2(&g[0], &u[0], 8)
		copy(gate[k:], g[:n-k])
	}
}
