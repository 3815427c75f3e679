package compute

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// randQ8 returns rows × cols of random Q8_0 blocks: half-precision scales
// mostly between 2^-10 and 1, a few of them zero, negative or subnormal,
// and int8 values over the whole range.
func randQ8(rng *rand.Rand, rows, cols int) []byte {
	raw := make([]byte, rows*q8RowBytes(cols))
	for b := 0; b < len(raw); b += Q8BlockBytes {
		h := uint16(5+rng.IntN(10))<<10 | uint16(rng.IntN(1024))
		switch rng.IntN(40) {
		case 0:
			h = 0
		case 1:
			h |= 0x8000
		case 2:
			h = uint16(rng.IntN(1024)) // subnormal
		}
		raw[b], raw[b+1] = byte(h), byte(h>>8)
		for i := 2; i < Q8BlockBytes; i++ {
			raw[b+i] = byte(rng.Uint32())
		}
	}
	return raw
}

// q8Ref returns element (r, c) of a Q8_0 matrix in float64, exactly.
func q8Ref(raw []byte, cols, r, c int) float64 {
	b := raw[r*q8RowBytes(cols)+c/Q8Block*Q8BlockBytes:]
	return float64(F16ToF32(uint16(b[0])|uint16(b[1])<<8)) * float64(int8(b[2+c%Q8Block]))
}

func TestQ8Kernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(63, 64))
	for _, ks := range allSets() {
		for _, cols := range []int{32, 64, 96, 128, 384, 1024, 1056} {
			for _, rows := range []int{1, 2, 3, 17} {
				raw := randQ8(rng, rows, cols)
				// Unaligned copies.
				w := append(make([]byte, 1, len(raw)+1), raw...)[1:]
				x := randF32(rng, cols+1)[1:]
				d := filled(rows+1, 7)
				ks.dotQ8(d[:rows], w, x, cols)
				wide := filled(rows*cols+1, 7)
				ks.q8ToF32(wide[:rows*cols], w)
				for r := range rows {
					want, mag := dotRef(cols, func(c int) float64 { return q8Ref(raw, cols, r, c) }, func(c int) float64 { return float64(x[c]) })
					if !close32(d[r], want, mag) {
						t.Fatalf("%s: dotQ8 %d × %d, row %d: got %v, want %v", ks.name, rows, cols, r, d[r], want)
					}
					for c := range cols {
						if got, want := wide[r*cols+c], q8Ref(raw, cols, r, c); float64(got) != want {
							t.Fatalf("%s: q8ToF32 %d × %d, (%d, %d): got %v, want %v", ks.name, rows, cols, r, c, got, want)
						}
					}
				}
				if d[rows] != 7 || wide[rows*cols] != 7 {
					t.Fatalf("%s: Q8_0 kernels wrote past their outputs", ks.name)
				}
			}
		}
	}
}

// BenchmarkMatMulQ8 runs MatMul at tinychat's shapes with Q8_0 weights, for
// one token (GB/s of weight bytes) and 512 tokens (GFLOP/s), next to the
// same shapes in bf16 for decode.
func BenchmarkMatMulQ8(b *testing.B) {
	rng := rand.New(rand.NewPCG(69, 70))
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
					w, _ := NewQ8_0(s.rows, s.cols, randQ8(rng, s.rows, s.cols))
					x, y := randF32(rng, n*s.cols), make([]float32, n*s.rows)
					for b.Loop() {
						p.matMul(&ks, y, x, n, w)
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					if n == 1 {
						b.ReportMetric(float64(w.Bytes())/sec/1e9, "GB/s")
					} else {
						b.ReportMetric(2*float64(n*s.rows*s.cols)/sec/1e9, "GFLOP/s")
					}
				})
			}
		}
	}
}

// BenchmarkDecodeStreamQ8 is BenchmarkDecodeStream with Q8_0 weights: 15 MB
// that no core's own cache holds. GB/s counts Q8_0 bytes; the weights per
// second are 32/34 of the bytes.
func BenchmarkDecodeStreamQ8(b *testing.B) {
	rng := rand.New(rand.NewPCG(71, 72))
	p := NewPool(0)
	defer p.Close()
	var mats []*Mat
	var bytes int64
	for range 8 {
		for _, s := range []struct{ rows, cols int }{{384, 384}, {128, 384}, {128, 384}, {384, 384}, {1024, 384}, {1024, 384}, {384, 1024}} {
			m, _ := NewQ8_0(s.rows, s.cols, randQ8(rng, s.rows, s.cols))
			mats = append(mats, m)
			bytes += m.Bytes()
		}
	}
	head, _ := NewQ8_0(4096, 384, randQ8(rng, 4096, 384))
	mats = append(mats, head)
	bytes += head.Bytes()
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
			})
		}
	}
}
