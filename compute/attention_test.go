package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// attnDims are head sizes around the SIMD widths, the 32-column strips of
// the multi-query kernels, and real models' 64, 96, 128 and 256.
var attnDims = []int{1, 3, 7, 8, 9, 16, 24, 31, 32, 33, 40, 63, 64, 65, 72, 96, 100, 128, 136, 256}

// attnRows are key counts around the 4-key tiles, plus ones that cross the
// multi-query kernels' chunks.
var attnRows = []int{0, 1, 2, 3, 4, 5, 7, 8, 13, 33, 130}

// filled returns n floats of v.
func filled(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestScores(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, ks := range allSets() {
		for _, d := range attnDims {
			for _, rows := range attnRows {
				q, k := randF32(rng, d+1)[1:], randF32(rng, rows*d+3)[3:]
				kb := randBF16(rng, rows*d+1)[1:]
				scale := float32(0.125 + rng.Float64())
				for _, bf := range []bool{false, true} {
					dst := filled(rows+1, 7)
					if bf {
						ks.scoresBF16(dst[:rows], q, kb, scale)
					} else {
						ks.scores(dst[:rows], q, k, scale)
					}
					for j := range rows {
						kv := func(i int) float64 { return float64(k[j*d+i]) }
						if bf {
							kv = func(i int) float64 { return float64(bf16(kb[j*d+i])) }
						}
						want, mag := dotRef(d, func(i int) float64 { return float64(q[i]) }, kv)
						s := float64(scale)
						if !close32(dst[j], s*want, s*mag) {
							t.Fatalf("%s: scores (bf16 %v) d=%d rows=%d, key %d: got %v, want %v", ks.name, bf, d, rows, j, dst[j], s*want)
						}
					}
					if dst[rows] != 7 {
						t.Fatalf("%s: scores (bf16 %v) d=%d rows=%d wrote past dst", ks.name, bf, d, rows)
					}
				}
			}
		}
	}
}

func TestScoresMulti(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	for _, ks := range allSets() {
		for _, d := range attnDims {
			for _, rows := range append(attnRows, 517) {
				if rows > 130 && d%8 != 0 {
					continue
				}
				for _, nq := range []int{1, 2, 3, 4, 5, 6, 7, 24, 29, 50} {
					if nq > 7 && rows > 33 && d%8 != 0 {
						continue
					}
					ld := rows + rng.IntN(3)
					q, k := randF32(rng, nq*d+1)[1:], randF32(rng, rows*d+2)[2:]
					scale := float32(0.125 + rng.Float64())
					dst := filled(nq*ld+1, 7)
					ks.scoresMulti(dst[:max(0, (nq-1)*ld+rows)], ld, q, nq, d, k, rows, scale)
					for i := range nq {
						for j := range ld {
							got := dst[i*ld+j]
							if j >= rows {
								if got != 7 {
									t.Fatalf("%s: scoresMulti d=%d rows=%d nq=%d wrote dst[%d][%d]", ks.name, d, rows, nq, i, j)
								}
								continue
							}
							want, mag := dotRef(d, func(c int) float64 { return float64(q[i*d+c]) }, func(c int) float64 { return float64(k[j*d+c]) })
							s := float64(scale)
							if !close32(got, s*want, s*mag) {
								t.Fatalf("%s: scoresMulti d=%d rows=%d nq=%d, (%d, %d): got %v, want %v", ks.name, d, rows, nq, i, j, got, s*want)
							}
						}
					}
					if dst[nq*ld] != 7 {
						t.Fatalf("%s: scoresMulti wrote past dst", ks.name)
					}
				}
			}
		}
	}
}

// mixRef returns out[c] + Σ_j p[j]·v(j, c) in float64, with its error scale.
func mixRef(out0 float32, rows int, p func(j int) float64, v func(j int) float64) (sum, mag float64) {
	s, m := dotRef(rows, p, v)
	return float64(out0) + s, math.Abs(float64(out0)) + m
}

func TestMixRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	for _, ks := range allSets() {
		for _, d := range attnDims {
			for _, rows := range attnRows {
				p, v := randF32(rng, rows+1)[1:], randF32(rng, rows*d+3)[3:]
				vb := randBF16(rng, rows*d+1)[1:]
				for _, bf := range []bool{false, true} {
					buf := randF32(rng, d+2)
					orig := append([]float32(nil), buf...)
					out := buf[1 : d+1]
					if bf {
						ks.mixRowsBF16(out, p, vb)
					} else {
						ks.mixRows(out, p, v)
					}
					for c := range d {
						vv := func(j int) float64 { return float64(v[j*d+c]) }
						if bf {
							vv = func(j int) float64 { return float64(bf16(vb[j*d+c])) }
						}
						want, mag := mixRef(orig[1+c], rows, func(j int) float64 { return float64(p[j]) }, vv)
						if !close32(out[c], want, mag) {
							t.Fatalf("%s: mixRows (bf16 %v) d=%d rows=%d, column %d: got %v, want %v", ks.name, bf, d, rows, c, out[c], want)
						}
					}
					if buf[0] != orig[0] || buf[d+1] != orig[d+1] {
						t.Fatalf("%s: mixRows (bf16 %v) d=%d rows=%d wrote outside out", ks.name, bf, d, rows)
					}
				}
			}
		}
	}
}

func TestMixRowsMulti(t *testing.T) {
	rng := rand.New(rand.NewPCG(47, 48))
	for _, ks := range allSets() {
		for _, d := range attnDims {
			for _, rows := range append(attnRows, 517) {
				if rows > 130 && d%8 != 0 {
					continue
				}
				for _, nq := range []int{1, 2, 3, 4, 5, 6, 7} {
					ldo, ldp := d+rng.IntN(3), rows+rng.IntN(3)
					p, v := randF32(rng, nq*ldp+1)[1:], randF32(rng, rows*d+2)[2:]
					buf := randF32(rng, nq*ldo+1)
					orig := append([]float32(nil), buf...)
					ks.mixRowsMulti(buf[:max(0, (nq-1)*ldo+d)], ldo, p, ldp, nq, d, v[:rows*d], rows)
					for i := range nq {
						for c := range ldo {
							got := buf[i*ldo+c]
							if c >= d {
								if got != orig[i*ldo+c] {
									t.Fatalf("%s: mixRowsMulti d=%d rows=%d nq=%d wrote out[%d][%d]", ks.name, d, rows, nq, i, c)
								}
								continue
							}
							want, mag := mixRef(orig[i*ldo+c], rows, func(j int) float64 { return float64(p[i*ldp+j]) }, func(j int) float64 { return float64(v[j*d+c]) })
							if !close32(got, want, mag) {
								t.Fatalf("%s: mixRowsMulti d=%d rows=%d nq=%d, (%d, %d): got %v, want %v", ks.name, d, rows, nq, i, c, got, want)
							}
						}
					}
					if buf[nq*ldo] != orig[nq*ldo] {
						t.Fatalf("%s: mixRowsMulti wrote past out", ks.name)
					}
				}
			}
		}
	}
}

// TestAttentionPublic runs the exported functions on both kernel sets
// against each other and checks their argument checks.
func TestAttentionPublic(t *testing.T) {
	rng := rand.New(rand.NewPCG(49, 50))
	const d, rows, nq = 64, 37, 3
	q, k, v := randF32(rng, nq*d), randF32(rng, rows*d), randF32(rng, rows*d)
	kb, vb := randBF16(rng, rows*d), randBF16(rng, rows*d)
	run := func() []float32 {
		var res []float32
		s := make([]float32, nq*rows)
		Scores(s, q[:d], k, rows, 0.125)
		res = append(res, s[:rows]...)
		ScoresBF16(s, q[:d], kb, rows, 0.125)
		res = append(res, s[:rows]...)
		ScoresMulti(s, rows, q, nq, k, rows, 0.125)
		for i := range nq {
			Softmax(s[i*rows : (i+1)*rows])
		}
		res = append(res, s...)
		out := make([]float32, nq*d)
		MixRows(out[:d], s, v, rows)
		MixRowsBF16(out[d:2*d], s, vb, rows)
		MixRowsMulti(out, d, s, rows, nq, v, rows)
		return append(res, out...)
	}
	restore := UseGeneric(true)
	want := run()
	restore()
	got := run()
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("result %d: %s kernels give %v, generic %v", i, KernelName(), got[i], want[i])
		}
	}

	panics := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	s := make([]float32, rows)
	panics("Scores with short k", func() { Scores(s, q[:d], k[:rows*d-1], rows, 1) })
	panics("Scores with short dst", func() { Scores(s[:rows-1], q[:d], k, rows, 1) })
	panics("ScoresBF16 with short k", func() { ScoresBF16(s, q[:d], kb[:d], rows, 1) })
	panics("ScoresMulti with ragged q", func() { ScoresMulti(s, rows, q[:d+1], 2, k, rows, 1) })
	panics("ScoresMulti with short dst", func() { ScoresMulti(s, rows, q[:2*d], 2, k, rows, 1) })
	panics("MixRows with short v", func() { MixRows(q[:d], s, v[:d], rows) })
	panics("MixRowsBF16 with short p", func() { MixRowsBF16(q[:d], s[:1], vb, rows) })
	panics("MixRowsMulti with ragged v", func() { MixRowsMulti(q, d, s, rows, 1, v[:rows*d-1], rows) })
	panics("MixRowsMulti with short out", func() { MixRowsMulti(q[:d], d, s, 0, 2, v, rows) })
}

// TestAttentionSteps checks the benchmarks' attention step, on every
// kernel set, against the per-key loop model.attendOne used.
func TestAttentionSteps(t *testing.T) {
	rng := rand.New(rand.NewPCG(57, 58))
	const d = 64
	for _, ks := range allSets() {
		for _, c := range []struct{ nq, rows int }{{1, 37}, {3, 130}, {48, 67}} {
			q, k, v := randF32(rng, c.nq*d), randF32(rng, c.rows*d), randF32(rng, c.rows*d)
			s, got, want := make([]float32, c.nq*c.rows), make([]float32, c.nq*d), make([]float32, c.nq*d)
			attention(&ks, got, s, q, k, v, c.nq, d, c.rows, 0.3)
			attentionPerKey(want, s, q, k, v, c.nq, d, c.rows, 0.3)
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 1e-5 {
					t.Fatalf("%s: attention of %d queries over %d keys, output %d: %v, want %v", ks.name, c.nq, c.rows, i, got[i], want[i])
				}
			}
		}
	}
}

func TestAttentionAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	const d, rows, nq = 72, 300, 29
	q, k, v := randF32(rng, nq*d), randF32(rng, rows*d), randF32(rng, rows*d)
	kb, vb := randBF16(rng, rows*d), randBF16(rng, rows*d)
	s, out := make([]float32, nq*rows), make([]float32, nq*d)
	for _, generic := range []bool{false, true} {
		restore := UseGeneric(generic)
		a := testing.AllocsPerRun(20, func() {
			Scores(s, q[:d], k, rows, 0.1)
			ScoresBF16(s, q[:d], kb, rows, 0.1)
			ScoresMulti(s, rows, q, nq, k, rows, 0.1)
			Softmax(s[:rows+3])
			ExpF32(s[:rows+3], s[:rows+3])
			Scale(s[:rows+3], 1/ExpSub(s[:rows+3], s[:rows+3], MaxF32(s[:rows+3])))
			MixRows(out[:d], s, v, rows)
			MixRowsBF16(out[:d], s, vb, rows)
			MixRowsMulti(out, d, s, rows, nq, v, rows)
		})
		restore()
		if a != 0 {
			t.Errorf("generic=%v: attention functions allocate %v times", generic, a)
		}
	}
}

// attention runs one step of attention for nq queries that share a KV
// head over rows cached keys and values, in the way the KV cache will call
// the kernels: scores, unnormalised softmax (MaxF32, ExpSub), weighted sum
// of values, and the outputs scaled by 1/Σ.
func attention(ks *kernelSet, out, s, q, k, v []float32, nq, d, rows int, scale float32) {
	var sums [64]float32
	if nq == 1 {
		ks.scores(s[:rows], q, k, scale)
	} else {
		ks.scoresMulti(s, rows, q, nq, d, k, rows, scale)
	}
	for i := range nq {
		si := s[i*rows : (i+1)*rows]
		sums[i] = ks.expSum(si, si, ks.maxF32(si))
	}
	clear(out[:nq*d])
	if nq == 1 {
		ks.mixRows(out[:d], s[:rows], v)
	} else {
		ks.mixRowsMulti(out, d, s, rows, nq, d, v, rows)
	}
	for i := range nq {
		ks.scal(out[i*d:(i+1)*d], 1/sums[i])
	}
}

// attentionPerKey is how model.attendOne did it: one Dot and one Axpy per
// key, with the float64-exp softmax.
func attentionPerKey(out, s, q, k, v []float32, nq, d, rows int, scale float32) {
	for i := range nq {
		qi, oi := q[i*d:(i+1)*d], out[i*d:(i+1)*d]
		for j := range rows {
			s[j] = Dot(qi, k[j*d:(j+1)*d]) * scale
		}
		softmaxF64(s[:rows])
		clear(oi)
		for j := range rows {
			Axpy(oi, s[j], v[j*d:(j+1)*d])
		}
	}
}

// BenchmarkAttention runs attention for 1, 3 (one token of a GQA group)
// and 48 (16 prefill tokens of a group) queries of size 64 over 512, 2048
// and 4096 cached keys. GFLOP/s counts the 4·nq·rows·d flops of the two
// products. "perkey" is the old per-key loop on the best kernels.
func BenchmarkAttention(b *testing.B) {
	rng := rand.New(rand.NewPCG(53, 54))
	const d = 64
	for _, rows := range []int{512, 2048, 4096} {
		k, v := randF32(rng, rows*d), randF32(rng, rows*d)
		for _, nq := range []int{1, 3, 48} {
			q := randF32(rng, nq*d)
			s, out := make([]float32, nq*rows), make([]float32, nq*d)
			flops := 4 * float64(nq*rows*d)
			report := func(b *testing.B) {
				b.ReportMetric(flops/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GFLOP/s")
			}
			if nq <= 3 {
				b.Run(fmt.Sprintf("perkey/keys=%d/q=%d", rows, nq), func(b *testing.B) {
					for b.Loop() {
						attentionPerKey(out, s, q, k, v, nq, d, rows, 0.125)
					}
					report(b)
				})
			}
			for _, ks := range allSets() {
				b.Run(fmt.Sprintf("%s/keys=%d/q=%d", ks.name, rows, nq), func(b *testing.B) {
					restore := UseGeneric(ks.name == "generic")
					defer restore()
					for b.Loop() {
						attention(&ks, out, s, q, k, v, nq, d, rows, 0.125)
					}
					report(b)
				})
			}
		}
	}
}

// BenchmarkAttentionParts times the scores and mix kernels on their own,
// f32 and bf16, for 2048 keys of size 64.
func BenchmarkAttentionParts(b *testing.B) {
	rng := rand.New(rand.NewPCG(55, 56))
	const d, rows = 64, 2048
	k, v := randF32(rng, rows*d), randF32(rng, rows*d)
	kb, vb := randBF16(rng, rows*d), randBF16(rng, rows*d)
	q := randF32(rng, 48*d)
	s, out := make([]float32, 48*rows), make([]float32, 48*d)
	for _, ks := range allSets() {
		for _, c := range []struct {
			name string
			nq   int
			f    func()
		}{
			{"scores", 1, func() { ks.scores(s[:rows], q[:d], k, 0.125) }},
			{"scoresBF16", 1, func() { ks.scoresBF16(s[:rows], q[:d], kb, 0.125) }},
			{"scoresMulti3", 3, func() { ks.scoresMulti(s, rows, q, 3, d, k, rows, 0.125) }},
			{"scoresMulti48", 48, func() { ks.scoresMulti(s, rows, q, 48, d, k, rows, 0.125) }},
			{"mixRows", 1, func() { ks.mixRows(out[:d], s[:rows], v) }},
			{"mixRowsBF16", 1, func() { ks.mixRowsBF16(out[:d], s[:rows], vb) }},
			{"mixRowsMulti3", 3, func() { ks.mixRowsMulti(out, d, s, rows, 3, d, v, rows) }},
			{"mixRowsMulti48", 48, func() { ks.mixRowsMulti(out, d, s, rows, 48, d, v, rows) }},
		} {
			b.Run(ks.name+"/"+c.name, func(b *testing.B) {
				for b.Loop() {
					c.f()
				}
				b.ReportMetric(2*float64(c.nq*rows*d)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GFLOP/s")
			})
		}
	}
}
