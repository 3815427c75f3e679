package compute

import "fmt"

// Attention building blocks over contiguous blocks of cached rows: keys or
// values stored row-major, rows of length d with stride d. They allocate
// nothing and run on the calling goroutine; callers split work across a
// Pool themselves. Any d works; multiples of 8 take the fast paths.

// Scores sets dst[j] = scale · Σ_c q[c]·k[j·d+c] for j < rows, where
// d = len(q): one query against rows float32 keys.
func Scores(dst, q, k []float32, rows int, scale float32) {
	d := len(q)
	if rows < 0 || len(dst) < rows || len(k) < rows*d {
		panic(fmt.Sprintf("compute.Scores: %d rows of %d need dst of %d and k of %d floats, have %d and %d", rows, d, rows, rows*d, len(dst), len(k)))
	}
	kernels.scores(dst[:rows], q, k[:rows*d], scale)
}

// ScoresBF16 is Scores for bfloat16 keys.
func ScoresBF16(dst, q []float32, k []uint16, rows int, scale float32) {
	d := len(q)
	if rows < 0 || len(dst) < rows || len(k) < rows*d {
		panic(fmt.Sprintf("compute.ScoresBF16: %d rows of %d need dst of %d and k of %d values, have %d and %d", rows, d, rows, rows*d, len(dst), len(k)))
	}
	kernels.scoresBF16(dst[:rows], q, k[:rows*d], scale)
}

// ScoresMulti is Scores for nq queries at once against the same keys: q
// holds exactly nq contiguous queries of length d = len(q)/nq, and it sets
// dst[i·ldDst+j] = scale · q_i·k_j for i < nq, j < rows; ldDst ≥ rows when
// nq > 1. The AVX2 kernels compute tiles of 3 queries × 4 keys, and of 24
// queries × 4 keys when nq ≥ 24, so grouping the query heads that share a
// KV head, and in prefill many tokens' worth of them, is much faster than
// one Scores per query.
func ScoresMulti(dst []float32, ldDst int, q []float32, nq int, k []float32, rows int, scale float32) {
	if nq <= 0 || rows <= 0 {
		if nq < 0 || rows < 0 {
			panic("compute.ScoresMulti: negative size")
		}
		return
	}
	d := len(q) / nq
	if len(q) != nq*d {
		panic(fmt.Sprintf("compute.ScoresMulti: %d query floats are not %d rows", len(q), nq))
	}
	if (nq > 1 && ldDst < rows) || len(dst) < (nq-1)*ldDst+rows || len(k) < rows*d {
		panic(fmt.Sprintf("compute.ScoresMulti: %d × %d scores with stride %d need dst of %d floats and k of %d, have %d and %d", nq, rows, ldDst, (nq-1)*ldDst+rows, rows*d, len(dst), len(k)))
	}
	kernels.scoresMulti(dst, ldDst, q, nq, d, k[:rows*d], rows, scale)
}

// MixRows adds Σ_j p[j]·v[j·d:(j+1)·d] to out for j < rows, where
// d = len(out): the probability-weighted sum of rows float32 values.
func MixRows(out, p, v []float32, rows int) {
	d := len(out)
	if rows < 0 || len(p) < rows || len(v) < rows*d {
		panic(fmt.Sprintf("compute.MixRows: %d rows of %d need p of %d and v of %d floats, have %d and %d", rows, d, rows, rows*d, len(p), len(v)))
	}
	kernels.mixRows(out, p[:rows], v[:rows*d])
}

// MixRowsBF16 is MixRows for bfloat16 values.
func MixRowsBF16(out, p []float32, v []uint16, rows int) {
	d := len(out)
	if rows < 0 || len(p) < rows || len(v) < rows*d {
		panic(fmt.Sprintf("compute.MixRowsBF16: %d rows of %d need p of %d and v of %d values, have %d and %d", rows, d, rows, rows*d, len(p), len(v)))
	}
	kernels.mixRowsBF16(out, p[:rows], v[:rows*d])
}

// MixRowsMulti is MixRows for nq queries at once over the same values: for
// i < nq it adds Σ_j p[i·ldP+j]·v[j·d:(j+1)·d] to out[i·ldOut : i·ldOut+d].
// The row length is d = len(v)/rows, so v must be sliced to exactly the
// rows·d floats of the block; ldOut ≥ d and ldP ≥ rows when nq > 1. The
// AVX2 kernel computes tiles of 3 queries × 32 columns, reading each value
// row once per three queries.
func MixRowsMulti(out []float32, ldOut int, p []float32, ldP int, nq int, v []float32, rows int) {
	if nq <= 0 || rows <= 0 {
		if nq < 0 || rows < 0 {
			panic("compute.MixRowsMulti: negative size")
		}
		return
	}
	d := len(v) / rows
	if len(v) != rows*d {
		panic(fmt.Sprintf("compute.MixRowsMulti: %d value floats are not %d rows", len(v), rows))
	}
	if (nq > 1 && (ldOut < d || ldP < rows)) || len(out) < (nq-1)*ldOut+d || len(p) < (nq-1)*ldP+rows {
		panic(fmt.Sprintf("compute.MixRowsMulti: %d queries × %d rows of %d with strides %d, %d need out of %d floats and p of %d, have %d and %d", nq, rows, d, ldOut, ldP, (nq-1)*ldOut+d, (nq-1)*ldP+rows, len(out), len(p)))
	}
	kernels.mixRowsMulti(out, ldOut, p, ldP, nq, d, v, rows)
}

func scoresGeneric(dst, q, k []float32, scale float32) {
	d, rows := len(q), len(dst)
	k = k[:rows*d]
	j := 0
	if d > 0 {
		var e [4]float32
		for ; j+4 <= rows; j += 4 {
			dot4Generic(&e, q, k[j*d:], d)
			dst[j], dst[j+1], dst[j+2], dst[j+3] = scale*e[0], scale*e[1], scale*e[2], scale*e[3]
		}
	}
	for ; j < rows; j++ {
		dst[j] = scale * dotGeneric(q, k[j*d:(j+1)*d])
	}
}

func scoresBF16Generic(dst, q []float32, k []uint16, scale float32) {
	d, rows := len(q), len(dst)
	k = k[:rows*d]
	for j := range dst {
		kr := k[j*d : (j+1)*d]
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= d; i += 4 {
			s0 += q[i] * bf16(kr[i])
			s1 += q[i+1] * bf16(kr[i+1])
			s2 += q[i+2] * bf16(kr[i+2])
			s3 += q[i+3] * bf16(kr[i+3])
		}
		for ; i < d; i++ {
			s0 += q[i] * bf16(kr[i])
		}
		dst[j] = scale * ((s0 + s1) + (s2 + s3))
	}
}

func scoresMultiGeneric(dst []float32, ldDst int, q []float32, nq, d int, k []float32, rows int, scale float32) {
	for i := range nq {
		scoresGeneric(dst[i*ldDst:i*ldDst+rows], q[i*d:(i+1)*d], k, scale)
	}
}

// mixRowsGeneric adds four rows at a time, so out is loaded and stored a
// quarter as often as with one Axpy per row.
func mixRowsGeneric(out, p, v []float32) {
	d, rows := len(out), len(p)
	v = v[:rows*d]
	j := 0
	for ; j+4 <= rows; j += 4 {
		p0, p1, p2, p3 := p[j], p[j+1], p[j+2], p[j+3]
		v0, v1, v2, v3 := v[j*d:][:d], v[(j+1)*d:][:d], v[(j+2)*d:][:d], v[(j+3)*d:][:d]
		for c := range out {
			out[c] += (p0*v0[c] + p1*v1[c]) + (p2*v2[c] + p3*v3[c])
		}
	}
	for ; j < rows; j++ {
		axpyGeneric(out, p[j], v[j*d:(j+1)*d])
	}
}

func mixRowsBF16Generic(out, p []float32, v []uint16) {
	d, rows := len(out), len(p)
	v = v[:rows*d]
	j := 0
	for ; j+2 <= rows; j += 2 {
		p0, p1 := p[j], p[j+1]
		v0, v1 := v[j*d:][:d], v[(j+1)*d:][:d]
		for c := range out {
			out[c] += p0*bf16(v0[c]) + p1*bf16(v1[c])
		}
	}
	for ; j < rows; j++ {
		pj, vj := p[j], v[j*d:][:d]
		for c := range out {
			out[c] += pj * bf16(vj[c])
		}
	}
}

func mixRowsMultiGeneric(out []float32, ldOut int, p []float32, ldP, nq, d int, v []float32, rows int) {
	for i := range nq {
		mixRowsGeneric(out[i*ldOut:i*ldOut+d], p[i*ldP:i*ldP+rows], v[:rows*d])
	}
}
