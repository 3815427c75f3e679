package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvserve/kvserve/gguf"
)

// ggufType is the GGUF type of each block DType, for checking kvserve's
// kernels against the gguf package's dequantizers.
var ggufType = map[DType]gguf.Type{Q8_0: gguf.Q8_0, Q4_0: gguf.Q4_0, Q5_0: gguf.Q5_0, Q4_K: gguf.Q4_K, Q6_K: gguf.Q6_K}

// randHalfScale returns a float16 scale mostly between 2^-10 and 1, now and
// then zero, negative or subnormal.
func randHalfScale(rng *rand.Rand) uint16 {
	h := uint16(5+rng.IntN(10))<<10 | uint16(rng.IntN(1024))
	switch rng.IntN(40) {
	case 0:
		h = 0
	case 1:
		h |= 0x8000
	case 2:
		h = uint16(rng.IntN(1024))
	}
	return h
}

// randBlocks returns rows × cols of random blocks of a block type: random
// code and scale bytes, with float16 scales from randHalfScale.
func randBlocks(rng *rand.Rand, dt DType, rows, cols int) []byte {
	if dt == Q8_0 {
		return randQ8(rng, rows, cols)
	}
	raw := make([]byte, rows*RowBytes(dt, cols))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	_, bb := blockShape(dt)
	put := func(b []byte) { h := randHalfScale(rng); b[0], b[1] = byte(h), byte(h>>8) }
	for b := 0; b < len(raw); b += bb {
		switch dt {
		case Q4_0, Q5_0:
			put(raw[b:])
		case Q4_K:
			put(raw[b:])
			put(raw[b+2:])
		case Q6_K:
			put(raw[b+208:])
		}
	}
	return raw
}

// blockMat returns a matrix of a block type over raw.
func blockMat(t *testing.T, dt DType, rows, cols int, raw []byte) *Mat {
	t.Helper()
	var m *Mat
	var err error
	if dt == Q8_0 {
		m, err = NewQ8_0(rows, cols, raw)
	} else {
		m, err = NewBlocks(dt, rows, cols, raw)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWidenMatchesGGUF(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	for _, ks := range allSets() {
		for _, dt := range []DType{Q8_0, Q4_0, Q5_0, Q4_K, Q6_K} {
			for _, cols := range []int{256, 512, 2048} {
				raw := randBlocks(rng, dt, 3, cols)
				want := make([]float32, 3*cols)
				if err := gguf.DequantizeRow(ggufType[dt], raw, want); err != nil {
					t.Fatal(err)
				}
				got := make([]float32, 3*cols)
				ks.widen(dt)(got, raw)
				m := blockMat(t, dt, 3, cols, raw)
				row := make([]float32, cols)
				m.Row(2, row)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] == 0 && want[i] == 0) {
						t.Fatalf("%s %v: element %d = %v, gguf gives %v", ks.name, dt, i, got[i], want[i])
					}
				}
				for i := range row {
					if row[i] != want[2*cols+i] {
						t.Fatalf("%v Row(2)[%d] = %v, want %v", dt, i, row[i], want[2*cols+i])
					}
				}
			}
		}
	}
}

// quantizeRef rounds one activation row as the Fast mode's contract says:
// per block of 32, scale max|x|/127 and values rounded half away from zero.
func quantizeRef(x []float32) []float64 {
	out := make([]float64, len(x))
	for b := 0; b < len(x); b += ActBlock {
		var amax float32
		for _, v := range x[b : b+ActBlock] {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		if d == 0 {
			continue
		}
		id := 1 / d
		for i, v := range x[b : b+ActBlock] {
			out[b+i] = float64(d) * math.Round(float64(v*id))
		}
	}
	return out
}

func TestMatMulFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(83, 84))
	shapes := []struct{ rows, cols, n int }{
		{1, 256, 1}, {3, 256, 2}, {70, 512, 1}, {65, 256, 4}, {129, 512, 8}, {16, 1024, 17}, {200, 256, 70},
	}
	for _, threads := range []int{1, 2} {
		p := NewPool(threads)
		defer p.Close()
		p.SetNumerics(Fast)
		for _, ks := range allSets() {
			for _, dt := range []DType{Q8_0, Q4_0, Q5_0, Q4_K, Q6_K, BF16} {
				for _, s := range shapes {
					name := fmt.Sprintf("%d threads, %s, %v %d×%d, n=%d", threads, ks.name, dt, s.rows, s.cols, s.n)
					var w *Mat
					wf := make([]float32, s.rows*s.cols)
					if dt == BF16 {
						w = randMat(rng, BF16, s.rows, s.cols)
						BF16ToF32(wf, w.BF16)
					} else {
						raw := randBlocks(rng, dt, s.rows, s.cols)
						w = blockMat(t, dt, s.rows, s.cols, raw)
						if err := gguf.DequantizeRow(ggufType[dt], raw, wf); err != nil {
							t.Fatal(err)
						}
					}
					x := randF32(rng, s.n*s.cols)
					y := make([]float32, s.n*s.rows+1)
					y[s.n*s.rows] = 5
					p.matMul(&ks, y[:s.n*s.rows], x, s.n, w)
					for tt := range s.n {
						var xq []float64
						if dt == BF16 && !ks.fast(BF16) { // Exact numerics
							xq = make([]float64, s.cols)
							for i, v := range x[tt*s.cols : (tt+1)*s.cols] {
								xq[i] = float64(v)
							}
						} else if dt == BF16 {
							xb := make([]uint16, s.cols)
							F32ToBF16(xb, x[tt*s.cols:(tt+1)*s.cols])
							xq = make([]float64, s.cols)
							for i, v := range xb {
								xq[i] = float64(bf16(v))
							}
						} else {
							xq = quantizeRef(x[tt*s.cols : (tt+1)*s.cols])
						}
						for r := range s.rows {
							want, mag := dotRef(s.cols, func(i int) float64 { return float64(wf[r*s.cols+i]) }, func(i int) float64 { return xq[i] })
							if got := y[tt*s.rows+r]; math.Abs(float64(got)-want) > 2e-5*mag+1e-30 {
								t.Fatalf("%s: y[%d][%d] = %v, want %v (scale %v)", name, tt, r, got, want, mag)
							}
						}
					}
					if y[s.n*s.rows] != 5 {
						t.Fatalf("%s: MatMul wrote past y", name)
					}
				}
			}
		}
	}
}

func TestMatMulExactBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(85, 86))
	p := NewPool(2)
	defer p.Close()
	for _, ks := range allSets() {
		for _, dt := range []DType{Q4_0, Q5_0, Q4_K, Q6_K} {
			for _, n := range []int{1, 3, 9, 70} {
				rows, cols := 37, 512
				raw := randBlocks(rng, dt, rows, cols)
				w := blockMat(t, dt, rows, cols, raw)
				wf := make([]float32, rows*cols)
				if err := gguf.DequantizeRow(ggufType[dt], raw, wf); err != nil {
					t.Fatal(err)
				}
				x := randF32(rng, n*cols)
				y := make([]float32, n*rows)
				p.matMul(&ks, y, x, n, w)
				for tt := range n {
					for r := range rows {
						want, mag := dotRef(cols, func(i int) float64 { return float64(wf[r*cols+i]) }, func(i int) float64 { return float64(x[tt*cols+i]) })
						if !close32(y[tt*rows+r], want, mag) {
							t.Fatalf("%s %v n=%d: y[%d][%d] = %v, want %v", ks.name, dt, n, tt, r, y[tt*rows+r], want)
						}
					}
				}
			}
		}
	}
}

func TestNewBlocksErrors(t *testing.T) {
	for _, c := range []struct {
		dt         DType
		rows, cols int
		n          int
	}{
		{Q4_0, 2, 33, 0}, {Q4_K, 1, 128, 72}, {Q6_K, 1, 256, 209}, {BF16, 1, 32, 64}, {Q4_0, -1, 32, 0},
	} {
		if _, err := NewBlocks(c.dt, c.rows, c.cols, make([]byte, c.n)); err == nil {
			t.Errorf("NewBlocks(%v, %d, %d, %d bytes) succeeded", c.dt, c.rows, c.cols, c.n)
		}
	}
}

func TestParseNumerics(t *testing.T) {
	for _, s := range []string{"exact", "fast"} {
		n, err := ParseNumerics(s)
		if err != nil || n.String() != s {
			t.Errorf("ParseNumerics(%q) = %v, %v", s, n, err)
		}
	}
	if _, err := ParseNumerics("bf16"); err == nil {
		t.Error("ParseNumerics(bf16) succeeded")
	}
}
