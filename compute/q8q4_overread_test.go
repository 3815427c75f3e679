//go:build linux && amd64 && !purego

package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// q8q4Arena places each argument of a Fast-mode kernel so that it ends
// where an inaccessible page starts: a read or write past any of them
// faults.
type q8q4Arena struct{ ov *ovArena }

func (a q8q4Arena) bytes(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	return a.ov.mem(n)
}

func (a q8q4Arena) int8s(n int) []int8 {
	b := a.bytes(n)
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func (a q8q4Arena) int32s(n int) []int32 {
	b := a.bytes(4 * n)
	return unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

func (a q8q4Arena) float32s(n int) []float32 {
	b := a.bytes(4 * n)
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// TestQ8Q4NoOverread runs every SIMD set's Q8_0 and Q4_0 kernels and
// activation quantizer on arguments that end at an unmapped page, with
// strided outputs whose gaps must stay as they were, and compares with the
// generic kernels.
func TestQ8Q4NoOverread(t *testing.T) {
	sets := simdSets()
	if len(sets) == 0 {
		t.Skip("no SIMD kernels on this CPU")
	}
	rng := rand.New(rand.NewPCG(137, 138))
	a := q8q4Arena{newOvArena(1, 2)}
	defer a.ov.free()
	type shape struct{ rows, cols, n int }
	var shapes []shape
	for _, cols := range []int{32, 96, 128, 160, 256, 384} {
		for rows := 1; rows <= 7; rows++ {
			for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 13} {
				shapes = append(shapes, shape{rows, cols, n})
			}
		}
	}
	// Prefill rows long enough to be split into column chunks.
	shapes = append(shapes, shape{3, 8192 + 160, 13}, shape{1, 6144, 17})
	for _, dt := range []DType{Q8_0, Q4_0} {
		for _, sh := range shapes {
			rows, cols, n := sh.rows, sh.cols, sh.n
			{
				{
					raw := randBlocks(rng, dt, rows, cols)
					w := a.bytes(len(raw))
					copy(w, raw)
					x := a.float32s(n * cols)
					copy(x, randF32(rng, n*cols))
					var ref qact
					ref.reset(n, cols)
					quantizeActGeneric(&ref, x, 0, n)
					ldy := rows + 2
					want := make([]float32, (n-1)*ldy+rows)
					// mag[i] bounds the rounding error of output i: Σ|w·x|.
					mag := make([]float64, len(want))
					wrow := make([]float32, cols)
					m := blockMat(t, dt, rows, cols, raw)
					for r := range rows {
						m.Row(r, wrow)
						for tt := range n {
							for c, wv := range wrow {
								mag[tt*ldy+r] += math.Abs(float64(wv) * float64(ref.d[(tt*cols+c)/ActBlock]) * float64(ref.q[tt*cols+c]))
							}
						}
					}
					matQ := generic.matQ(dt)
					matQ(want, ldy, w, rows, &ref, n)
					for _, ks := range sets {
						name := fmt.Sprintf("%s %v %d×%d n=%d", ks.name, dt, rows, cols, n)
						q := qact{cols: cols, q: a.int8s(n * cols), d: a.float32s(n * cols / ActBlock), s: a.int32s(n * cols / 16)}
						ks.quantizeAct(&q, x, 0, n)
						y := a.float32s((n-1)*ldy + rows)
						for i := range y {
							y[i] = -3
						}
						ks.matQ(dt)(y, ldy, w, rows, &q, n)
						for i, v := range y {
							if i%ldy >= rows {
								if v != -3 {
									t.Fatalf("%s: wrote y[%d], a gap", name, i)
								}
								continue
							}
							if math.Abs(float64(v-want[i])) > 2e-5*mag[i]+1e-30 {
								t.Fatalf("%s: y[%d] = %v, generic %v", name, i, v, want[i])
							}
						}
					}
				}
			}
		}
	}
}
