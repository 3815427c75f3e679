package compute

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randQ4 returns rows × cols of random Q4 blocks: scales mostly between
// 2^-10 and 1 with offsets between −16·s and s, a few scales and offsets
// zero, negative or subnormal, and codes over the whole range.
func randQ4(rng *rand.Rand, rows, cols int) []byte { return randQ4Edges(rng, rows, cols, true) }

// randQ4Edges is randQ4, without the zero, negative and subnormal scales
// and offsets unless edges is set: benchmarks must not time the CPU's
// slow path for subnormal floats, which real weights never take.
func randQ4Edges(rng *rand.Rand, rows, cols int, edges bool) []byte {
	raw := make([]byte, rows*Q4RowBytes(cols))
	for b := 0; b < len(raw); b += Q4BlockBytes {
		s := float32(math.Ldexp(1+rng.Float64(), -1-rng.IntN(10)))
		m := s * float32(rng.Float64()*17-16)
		e := 40
		if edges {
			e = rng.IntN(40)
		}
		switch e {
		case 0:
			s = 0
		case 1:
			s = -s
		case 2:
			s = math.Float32frombits(rng.Uint32() & 0x7fffff) // subnormal
		case 3:
			m = 0
		case 4:
			m = math.Float32frombits(0x80000000 | rng.Uint32()&0x7fffff)
		}
		putQ4Block(raw[b:], s, m)
		for i := 8; i < Q4BlockBytes; i++ {
			raw[b+i] = byte(rng.Uint32())
		}
	}
	return raw
}

// q4Ref returns element (r, c) of a Q4 matrix computed in float64 and
// rounded where the format rounds: after the product, after the sum.
func q4Ref(raw []byte, cols, r, c int) float64 {
	b := raw[r*Q4RowBytes(cols)+c/Q4Block*Q4BlockBytes:]
	s := math.Float32frombits(binary.LittleEndian.Uint32(b))
	m := math.Float32frombits(binary.LittleEndian.Uint32(b[4:]))
	j := c % Q4Block
	q := b[8+j%16] & 15
	if j >= 16 {
		q = b[8+j%16] >> 4
	}
	p := float32(float64(s) * float64(q)) // exact product, rounded once
	return float64(float32(float64(p) + float64(m)))
}

// TestQ4Kernels checks dotQ4 against a float64 dot product of the exact
// weights and q4ToF32 bit for bit, for every kernel set, at row lengths
// around the two-block unroll and at unaligned addresses.
func TestQ4Kernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(83, 84))
	for _, ks := range allSets() {
		for _, cols := range []int{32, 64, 96, 128, 160, 384, 1024, 1056} {
			for _, rows := range []int{1, 2, 3, 17} {
				raw := randQ4(rng, rows, cols)
				w := append(make([]byte, 1, len(raw)+1), raw...)[1:] // odd address
				x := randF32(rng, cols+1)[1:]
				d := filled(rows+1, 7)
				ks.dotQ4(d[:rows], w, x, cols)
				wide := filled(rows*cols+1, 7)
				ks.q4ToF32(wide[:rows*cols], w)
				for r := range rows {
					want, mag := dotRef(cols, func(c int) float64 { return q4Ref(raw, cols, r, c) }, func(c int) float64 { return float64(x[c]) })
					if !close32(d[r], want, mag) {
						t.Fatalf("%s: dotQ4 %d × %d, row %d: got %v, want %v", ks.name, rows, cols, r, d[r], want)
					}
					for c := range cols {
						if got, want := wide[r*cols+c], q4Ref(raw, cols, r, c); float64(got) != want {
							t.Fatalf("%s: q4ToF32 %d × %d, (%d, %d): got %v, want %v", ks.name, rows, cols, r, c, got, want)
						}
					}
				}
				if d[rows] != 7 || wide[rows*cols] != 7 {
					t.Fatalf("%s: Q4 kernels wrote past their outputs", ks.name)
				}
			}
		}
		// No rows, or no columns: nothing read, outputs zero.
		d := filled(2, 7)
		ks.dotQ4(d, nil, nil, 0)
		ks.dotQ4(d[:0], nil, make([]float32, 64), 64)
		ks.q4ToF32(d[:0], nil)
		if d[0] != 0 || d[1] != 0 {
			t.Errorf("%s: dotQ4 of zero columns gave %v", ks.name, d)
		}
	}
}

// TestQ4FromGGMLErrors checks the size checks; the values are tested
// against model/gguf's dequantizers in package model.
func TestQ4FromGGMLErrors(t *testing.T) {
	for _, c := range []struct {
		typ       GGMLQ4
		dst, src  int
		wantError bool
	}{
		{GGMLQ4_0, 48, 36, false}, {GGMLQ4_1, 24, 20, false}, {GGMLQ4_K, 192, 144, false}, {GGMLQ4_K, 0, 0, false},
		{GGMLQ4_0, 48, 35, true}, {GGMLQ4_0, 47, 36, true}, {GGMLQ4_K, 191, 144, true}, {GGMLQ4_K, 24, 18, true}, {GGMLQ4(9), 24, 18, true},
	} {
		err := Q4FromGGML(c.typ, make([]byte, c.dst), make([]byte, c.src))
		if (err != nil) != c.wantError {
			t.Errorf("Q4FromGGML(%v, %d bytes ← %d bytes): %v", c.typ, c.dst, c.src, err)
		}
	}
}

// BenchmarkMatMulQ4 is BenchmarkMatMulQ8 with Q4 weights: one token
// (GB/s of Q4 bytes, 0.75 a weight, and GFLOP/s) and 512 tokens (GFLOP/s).
func BenchmarkMatMulQ4(b *testing.B) {
	rng := rand.New(rand.NewPCG(89, 90))
	p := NewPool(0)
	defer p.Close()
	for _, ks := range allSets() {
		for _, n := range []int{1, 512} {
			for _, s := range tinyShapes {
				if n == 512 && (s.name == "head" || ks.name == "generic" && s.name != "q") {
					continue
				}
				phase := "decode"
				if n > 1 {
					phase = "prefill"
				}
				b.Run(fmt.Sprintf("%s/%s/%s", ks.name, phase, s.name), func(b *testing.B) {
					w, _ := NewQ4(s.rows, s.cols, randQ4Edges(rng, s.rows, s.cols, false))
					x, y := randF32(rng, n*s.cols), make([]float32, n*s.rows)
					for b.Loop() {
						p.matMul(&ks, y, x, n, w)
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					if n == 1 {
						b.ReportMetric(float64(w.Bytes())/sec/1e9, "GB/s")
					}
					b.ReportMetric(2*float64(n*s.rows*s.cols)/sec/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkDecodeStreamQ4 is BenchmarkDecodeStreamQ8 with Q4 weights: the
// same 15 M weights, 11 MB of Q4. GB/s counts Q4 bytes (0.75 a weight).
func BenchmarkDecodeStreamQ4(b *testing.B) {
	rng := rand.New(rand.NewPCG(91, 92))
	p := NewPool(0)
	defer p.Close()
	var mats []*Mat
	var bytes, weights int64
	add := func(rows, cols int) {
		m, _ := NewQ4(rows, cols, randQ4Edges(rng, rows, cols, false))
		mats = append(mats, m)
		bytes += m.Bytes()
		weights += int64(rows * cols)
	}
	for range 8 {
		for _, s := range []struct{ rows, cols int }{{384, 384}, {128, 384}, {128, 384}, {384, 384}, {1024, 384}, {1024, 384}, {384, 1024}} {
			add(s.rows, s.cols)
		}
	}
	add(4096, 384)
	x, y := randF32(rng, 1024), make([]float32, 4096)
	p1 := NewPool(1)
	defer p1.Close()
	for _, ks := range allSets() {
		for _, pool := range []*Pool{p1, p} {
			b.Run(fmt.Sprintf("%s/threads=%d", ks.name, pool.Threads()), func(b *testing.B) {
				for b.Loop() {
					for _, m := range mats {
						pool.matMul(&ks, y, x, 1, m)
					}
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(bytes)/sec/1e9, "GB/s")
				b.ReportMetric(2*float64(weights)/sec/1e9, "GFLOP/s")
			})
		}
	}
}
