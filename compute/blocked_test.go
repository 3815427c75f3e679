package compute

import (
	"math/rand/v2"
	"testing"
)

// blockedTypes are the weight types stored in blocks of codes: their
// constructor, a random raw matrix, the bytes of one block, and a float64
// reference for one weight.
var blockedTypes = []struct {
	name       string
	dtype      DType
	blockBytes int
	new        func(rows, cols int, raw []byte) (*Mat, error)
	raw        func(rng *rand.Rand, rows, cols int) []byte
	ref        func(w *Mat, cols, r, c int) float64
}{
	{"q8_0", Q8_0, Q8BlockBytes, NewQ8_0, randQ8,
		func(w *Mat, cols, r, c int) float64 { return q8Ref(w.Q8, cols, r, c) }},
	{"q4", Q4, Q4BlockBytes, NewQ4, randQ4,
		func(w *Mat, cols, r, c int) float64 { return q4Ref(w.Q4, cols, r, c) }},
}

// randBlocked returns a random rows × cols matrix of the i-th blocked type.
func randBlocked(i int, rng *rand.Rand, rows, cols int) (*Mat, error) {
	bt := blockedTypes[i]
	return bt.new(rows, cols, bt.raw(rng, rows, cols))
}

// TestNewBlocked checks the constructors: type, shape and bytes of a good
// matrix, an error for every wrong length or shape, and the empty matrix.
func TestNewBlocked(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	for i, bt := range blockedTypes {
		m, err := randBlocked(i, rng, 3, 64)
		if err != nil {
			t.Fatal(err)
		}
		if m.DType != bt.dtype || m.DType.String() != bt.name || m.Bytes() != int64(3*2*bt.blockBytes) || m.Rows != 3 || m.Cols != 64 {
			t.Errorf("%s: got %+v, %v, %d bytes", bt.name, m, m.DType, m.Bytes())
		}
		good := 3 * 2 * bt.blockBytes
		for _, bad := range []struct{ rows, cols, n int }{{3, 64, good - 1}, {3, 64, good + 1}, {3, 48, 3 * bt.blockBytes}, {-1, 32, 0}, {2, 0, 1}} {
			if _, err := bt.new(bad.rows, bad.cols, make([]byte, bad.n)); err == nil {
				t.Errorf("%s (%d, %d) over %d bytes: no error", bt.name, bad.rows, bad.cols, bad.n)
			}
		}
		if m, err := bt.new(0, 32, nil); err != nil || m.Bytes() != 0 {
			t.Errorf("empty %s: %v, %v", bt.name, m, err)
		}
	}
}

// TestMatMulBlocked checks MatMul with Q8_0 and Q4 weights against a
// float64 reference on every kernel set, 1 and 3 threads, for decode and
// prefill shapes, and that nothing is written past y.
func TestMatMulBlocked(t *testing.T) {
	rng := rand.New(rand.NewPCG(65, 66))
	shapes := []struct{ rows, cols, n int }{
		{1, 32, 1}, {3, 64, 1}, {5, 96, 2}, {17, 128, 3}, {7, 32, 4}, {13, 160, 5},
		{128, 384, 1}, {130, 1024, 2}, {67, 256, 70}, {64, 384, 131}, {1, 0, 2},
	}
	for bi, bt := range blockedTypes {
		for _, threads := range []int{1, 3} {
			p := NewPool(threads)
			defer p.Close()
			for _, ks := range allSets() {
				for _, s := range shapes {
					w, err := randBlocked(bi, rng, s.rows, s.cols)
					if err != nil {
						t.Fatal(err)
					}
					x := randF32(rng, s.n*s.cols)
					y := filled(s.n*s.rows+1, 5)
					p.matMul(&ks, y[:s.n*s.rows], x, s.n, w)
					for tt := range s.n {
						for r := range s.rows {
							want, mag := dotRef(s.cols, func(c int) float64 { return bt.ref(w, s.cols, r, c) }, func(c int) float64 { return float64(x[tt*s.cols+c]) })
							if got := y[tt*s.rows+r]; !close32(got, want, mag) {
								t.Fatalf("%d threads, %s, %s %d×%d, n=%d: y[%d][%d] = %v, want %v", threads, ks.name, bt.name, s.rows, s.cols, s.n, tt, r, got, want)
							}
						}
					}
					if y[s.n*s.rows] != 5 {
						t.Fatalf("%s %s: MatMul wrote past y", ks.name, bt.name)
					}
				}
			}
		}
	}
}

// TestBlockedRowAndAllocs checks Mat.Row against the reference on both
// kernel paths and that MatMul allocates nothing.
func TestBlockedRowAndAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(67, 68))
	p := NewPool(2)
	defer p.Close()
	for bi, bt := range blockedTypes {
		w, _ := randBlocked(bi, rng, 9, 96)
		row := make([]float32, 96)
		for _, generic := range []bool{false, true} {
			restore := UseGeneric(generic)
			w.Row(4, row)
			restore()
			for c, v := range row {
				if want := bt.ref(w, 96, 4, c); float64(v) != want {
					t.Fatalf("%s generic=%v: Row(4)[%d] = %v, want %v", bt.name, generic, c, v, want)
				}
			}
		}
		big, _ := randBlocked(bi, rng, 256, 384)
		for _, n := range []int{1, 16} {
			x, y := randF32(rng, n*384), make([]float32, n*256)
			p.MatMul(y, x, n, big)
			if a := testing.AllocsPerRun(50, func() { p.MatMul(y, x, n, big) }); a != 0 {
				t.Errorf("%s MatMul of %d tokens allocates %v times per call", bt.name, n, a)
			}
		}
	}
}
