package kvcache

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDotAxpyCodes checks dotCodes and axpyCodes against a plain loop
// over getCode for every width, with row lengths that do and do not fill
// the unrolled steps (3-bit codes 8 at a time) or the last byte.
func TestDotAxpyCodes(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, f := range quantFormats {
		for _, d := range []int{64, 40, 13, 7} {
			bits := f.Bits()
			row := make([]byte, (d*bits+7)/8)
			for i := range row {
				row[i] = byte(r.UintN(256))
			}
			w := make([]float32, d)
			for i := range w {
				w[i] = float32(r.NormFloat64())
			}
			var want float64
			out := make([]float32, d)
			for c := range d {
				want += float64(w[c]) * float64(getCode(row, c, bits))
				out[c] = w[c]
			}
			if got := dotCodes(w, row, bits); math.Abs(float64(got)-want) > 1e-4*(1+math.Abs(want)) {
				t.Errorf("%s d=%d: dotCodes %g, want %g", f, d, got, want)
			}
			axpyCodes(out, 0.5, row, bits)
			for c := range d {
				if want := w[c] + 0.5*float32(getCode(row, c, bits)); out[c] != want {
					t.Fatalf("%s d=%d: axpyCodes[%d] = %g, want %g", f, d, c, out[c], want)
				}
			}
		}
	}
}

// BenchmarkQuantAttention is one block's attention step as decoding runs
// it: per-channel keys scored against a query, per-token values mixed.
func BenchmarkQuantAttention(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const n, d = 32, 128
	for _, f := range []Format{BF16, Int8, Int4, Int3, Int2} {
		kf, vf := fullRows(BF16, kvRows(r, n, d), n, d), fullRows(BF16, kvRows(r, n, d), n, d)
		k, v := kf, vf
		if f.Quantized() {
			k = rows{q: quantizeRows(&kf, f, n, d, false, make([]float32, n*d))}
			v = rows{q: quantizeRows(&vf, f, n, d, true, make([]float32, n*d))}
		}
		q, p, out := make([]float32, d), make([]float32, n), make([]float32, d)
		for i := range q {
			q[i] = float32(r.NormFloat64())
		}
		b.Run(f.String(), func(b *testing.B) {
			for b.Loop() {
				k.scores(p, q, 0, n, 1)
				v.mix(out, p, 0, n)
			}
		})
	}
}
