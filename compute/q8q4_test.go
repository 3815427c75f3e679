package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// q8q4Shapes are the awkward shapes of the Q8_0 and Q4_0 kernel tests:
// rows around the tile height, columns that end mid-group (groups are 128
// columns) and token counts around the tile width.
var q8q4Shapes = func() []struct{ rows, cols, n int } {
	var s []struct{ rows, cols, n int }
	for _, rows := range []int{1, 2, 3, 4, 5, 7, 9} {
		for _, cols := range []int{32, 96, 128, 160, 256, 352} {
			for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9} {
				s = append(s, struct{ rows, cols, n int }{rows, cols, n})
			}
		}
	}
	return append(s, []struct{ rows, cols, n int }{
		{13, 512, 17}, {6, 384, 70}, {5, 416, 12}, {3, 128, 13}, {4, 96, 16}, {7, 640, 23}, {67, 256, 9}, {5, 2048, 3}, {3, 8192, 2}, {2, 8192 + 96, 5}, {3, 8192 + 160, 13}, {2, 6144, 12},
	}...)
}()

// quantizeRefRow returns activation row t of a as float64 values d·q.
func quantizeRefRow(a *qact, t int) []float64 {
	out := make([]float64, a.cols)
	for i := range out {
		e := t*a.cols + i
		out[i] = float64(a.d[e/ActBlock]) * float64(a.q[e])
	}
	return out
}

func TestQ8Q4Kernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(131, 132))
	for _, dt := range []DType{Q8_0, Q4_0} {
		for _, s := range q8q4Shapes {
			raw := randBlocks(rng, dt, s.rows, s.cols)
			wf := make([]float64, s.rows*s.cols)
			row := make([]float32, s.cols)
			m := blockMat(t, dt, s.rows, s.cols, raw)
			for r := range s.rows {
				m.Row(r, row)
				for i, v := range row {
					wf[r*s.cols+i] = float64(v)
				}
			}
			x := randF32(rng, s.n*s.cols)
			var a qact
			a.reset(s.n, s.cols)
			quantizeActGeneric(&a, x, 0, s.n)
			xq := make([][]float64, s.n)
			for tt := range s.n {
				xq[tt] = quantizeRefRow(&a, tt)
			}
			ldy := s.rows + 3 // gaps between token rows must stay untouched
			for _, ks := range allSets() {
				name := fmt.Sprintf("%s %v %d×%d n=%d", ks.name, dt, s.rows, s.cols, s.n)
				y := make([]float32, s.n*ldy)
				for i := range y {
					y[i] = 7
				}
				ks.matQ(dt)(y, ldy, raw, s.rows, &a, s.n)
				for tt := range s.n {
					for r := range ldy {
						got := y[tt*ldy+r]
						if r >= s.rows {
							if got != 7 {
								t.Fatalf("%s: wrote y[%d][%d], a gap", name, tt, r)
							}
							continue
						}
						want, mag := dotRef(s.cols, func(i int) float64 { return wf[r*s.cols+i] }, func(i int) float64 { return xq[tt][i] })
						if math.Abs(float64(got)-want) > 2e-5*mag+1e-30 {
							t.Fatalf("%s: y[%d][%d] = %v, want %v (scale %v)", name, tt, r, got, want, mag)
						}
					}
				}
			}
		}
	}
}

// TestQuantizeActSets checks every set's activation quantizer against the
// generic one bit for bit: ties, zero blocks, tiny and huge blocks, and
// row ranges that start mid-matrix.
func TestQuantizeActSets(t *testing.T) {
	rng := rand.New(rand.NewPCG(133, 134))
	for _, cols := range []int{32, 64, 256, 2048} {
		const rows = 5
		x := randF32(rng, rows*cols)
		for b := 0; b < len(x); b += ActBlock {
			blk := x[b : b+ActBlock]
			switch rng.IntN(8) {
			case 0: // all zero
				clear(blk)
			case 1: // scale 1: halves are exact ties
				for i := range blk {
					blk[i] = float32(rng.IntN(254)-127) + 0.5*float32(rng.IntN(2))
				}
				blk[rng.IntN(ActBlock)] = 127
			case 2: // tiny, some subnormal
				for i := range blk {
					blk[i] *= 1e-39
				}
			case 3: // huge
				for i := range blk {
					blk[i] *= 3e38
				}
			case 4: // one value, the rest zeros and negative zeros
				for i := range blk {
					blk[i] = float32(math.Copysign(0, float64(rng.IntN(2)-1)))
				}
				blk[rng.IntN(ActBlock)] = -2.5
			}
		}
		for _, ks := range allSets() {
			for _, rng := range [][2]int{{0, rows}, {1, 3}, {4, 5}, {2, 2}} {
				var want, got qact
				want.reset(rows, cols)
				got.reset(rows, cols)
				quantizeActGeneric(&want, x, rng[0], rng[1])
				ks.quantizeAct(&got, x, rng[0], rng[1])
				name := fmt.Sprintf("%s cols=%d rows [%d,%d)", ks.name, cols, rng[0], rng[1])
				for i := range want.q {
					if got.q[i] != want.q[i] {
						t.Fatalf("%s: q[%d] = %d, want %d (x %v, d %v)", name, i, got.q[i], want.q[i], x[i], want.d[i/ActBlock])
					}
				}
				for i := range want.d {
					if math.Float32bits(got.d[i]) != math.Float32bits(want.d[i]) {
						t.Fatalf("%s: d[%d] = %v, want %v", name, i, got.d[i], want.d[i])
					}
				}
				for i := range want.s {
					if got.s[i] != want.s[i] {
						t.Fatalf("%s: s[%d] = %d, want %d", name, i, got.s[i], want.s[i])
					}
				}
			}
		}
	}
}
