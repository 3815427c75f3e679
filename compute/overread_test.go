//go:build linux && amd64 && !purego

package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"
)

// The guard-value check of TestMaxF32NoOverread, for every exported entry
// point that reaches an assembly kernel: each input and output slice sits
// inside a larger buffer whose head, tail and (for strided arguments) gaps
// hold poison (huge values in one pass, NaN in the other). A kernel that
// reads poison gets a result far from the generic kernels'; one that writes
// outside its output leaves the poison changed.

const (
	ovHead = 8  // guard elements before each slice
	ovTail = 40 // and after it
)

// ovBuf is one argument: full is the whole buffer, body = full[ovHead:][:len(writable)].
type ovBuf struct {
	f32      []float32
	u16      []uint16
	u8       []byte
	orig     any // copy of full as made
	writable []bool
}

// ovArena makes the arguments of one call, the same in every run with the
// same seed and poison.
type ovArena struct {
	rng    *rand.Rand
	poison int // 0: huge values, 1: NaN, 2: huge values and an unmapped page after each slice
	bufs   []*ovBuf
	maps   [][]byte
}

// tail is the guard length after each slice: none when an inaccessible
// page follows it instead.
func (a *ovArena) tail() int {
	if a.poison == 2 {
		return 0
	}
	return ovTail
}

// mem returns n bytes, 4-byte aligned; with poison 2 they end where an
// inaccessible page starts, so that any read past them faults.
func (a *ovArena) mem(n int) []byte {
	if a.poison != 2 {
		b := make([]float32, (n+3)/4)
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), len(b)*4)[:n]
	}
	ps := syscall.Getpagesize()
	np := (n+ps-1)/ps + 1
	m, err := syscall.Mmap(-1, 0, np*ps, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	if err := syscall.Mprotect(m[(np-1)*ps:], syscall.PROT_NONE); err != nil {
		panic(err)
	}
	a.maps = append(a.maps, m)
	end := (np - 1) * ps
	return m[end-n : end : end]
}

func (a *ovArena) free() {
	for _, m := range a.maps {
		syscall.Munmap(m)
	}
	a.maps = nil
}

func (a *ovArena) memF32(n int) []float32 {
	if n == 0 {
		return []float32{}
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&a.mem(4 * n)[0])), n)
}

func (a *ovArena) memU16(n int) []uint16 {
	if n == 0 {
		return []uint16{}
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&a.mem(2 * n)[0])), n)
}

func newOvArena(seed uint64, poison int) *ovArena {
	return &ovArena{rng: rand.New(rand.NewPCG(seed, 99)), poison: poison}
}

func (a *ovArena) pf32() float32 {
	if a.poison != 1 {
		return 1e30
	}
	return float32(math.NaN())
}

// inGap reports whether body position p of an nq × w layout with stride ld
// is a gap.
func inGap(p, ld, w int) bool { return p%ld >= w }

// f32s returns nq rows of w floats with stride ld (length (nq-1)·ld+w, or
// 0), gaps poisoned; writable marks whether the kernel may write the rows.
func (a *ovArena) f32s(nq, ld, w int, writable bool) []float32 {
	n := 0
	if nq > 0 && w > 0 {
		n = (nq-1)*ld + w
	}
	b := &ovBuf{f32: a.memF32(ovHead + n + a.tail()), writable: make([]bool, n)}
	for i := range b.f32 {
		b.f32[i] = a.pf32()
	}
	for p := range n {
		if !inGap(p, ld, w) {
			b.f32[ovHead+p] = float32(a.rng.Float64()*2 - 1)
			b.writable[p] = writable
		}
	}
	b.orig = append([]float32(nil), b.f32...)
	a.bufs = append(a.bufs, b)
	return b.f32[ovHead : ovHead+n : ovHead+n]
}

func (a *ovArena) f32(n int) []float32  { return a.f32s(1, n, n, false) }
func (a *ovArena) f32w(n int) []float32 { return a.f32s(1, n, n, true) }

// u16 returns n bfloat16 inputs.
func (a *ovArena) u16(n int) []uint16 {
	b := &ovBuf{u16: a.memU16(ovHead + n + a.tail()), writable: make([]bool, n)}
	for i := range b.u16 {
		b.u16[i] = uint16(math.Float32bits(a.pf32()) >> 16)
	}
	for p := range n {
		b.u16[ovHead+p] = uint16(math.Float32bits(float32(a.rng.Float64()*2-1)) >> 16)
	}
	b.orig = append([]uint16(nil), b.u16...)
	a.bufs = append(a.bufs, b)
	return b.u16[ovHead : ovHead+n : ovHead+n]
}

// q8 returns rows × cols Q8_0 weights (cols a multiple of 32).
func (a *ovArena) q8(rows, cols int) []byte {
	n := rows * q8RowBytes(cols)
	pb := byte(0x7b) // scale 0x7b7b = 61280, weights 123
	if a.poison == 1 {
		pb = 0x7e // scale NaN
	}
	b := &ovBuf{u8: a.mem(ovHead + n + a.tail()), writable: make([]bool, n)}
	for i := range b.u8 {
		b.u8[i] = pb
	}
	body := b.u8[ovHead : ovHead+n]
	for i := 0; i < n; i += Q8BlockBytes {
		s := 0x2c00 + uint16(a.rng.IntN(0x100)) // about 1/16
		body[i], body[i+1] = byte(s), byte(s>>8)
		for j := 2; j < Q8BlockBytes; j++ {
			body[i+j] = byte(a.rng.IntN(256))
		}
	}
	b.orig = append([]byte(nil), b.u8...)
	a.bufs = append(a.bufs, b)
	return body[:n:n]
}

// q4 returns rows × cols Q4 weights (cols a multiple of 32).
func (a *ovArena) q4(rows, cols int) []byte {
	n := rows * Q4RowBytes(cols)
	pb := byte(0x7b) // scale and offset 1.3e36, codes 11 and 7
	if a.poison == 1 {
		pb = 0xff // scale and offset NaN
	}
	b := &ovBuf{u8: a.mem(ovHead + n + a.tail()), writable: make([]bool, n)}
	for i := range b.u8 {
		b.u8[i] = pb
	}
	body := b.u8[ovHead : ovHead+n]
	for i := 0; i < n; i += Q4BlockBytes {
		s := float32(1+a.rng.Float64()) / 16
		putQ4Block(body[i:], s, -8*s*float32(a.rng.Float64()))
		for j := 8; j < Q4BlockBytes; j++ {
			body[i+j] = byte(a.rng.IntN(256))
		}
	}
	b.orig = append([]byte(nil), b.u8...)
	a.bufs = append(a.bufs, b)
	return body[:n:n]
}

func ovClose(g, w float32) bool {
	if g != g || w != w {
		return g != g && w != w
	}
	if math.IsInf(float64(w), 0) || math.IsInf(float64(g), 0) {
		return g == w
	}
	return math.Abs(float64(g-w)) <= 2e-4*math.Max(1, math.Abs(float64(w)))
}

func sameBits32(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }

// checkGuards reports the first changed element outside the writable parts.
func (a *ovArena) checkGuards() error {
	for bi, b := range a.bufs {
		var n int
		var changed func(i int) bool
		switch {
		case b.f32 != nil:
			o := b.orig.([]float32)
			n, changed = len(b.f32), func(i int) bool { return !sameBits32(b.f32[i], o[i]) }
		case b.u16 != nil:
			o := b.orig.([]uint16)
			n, changed = len(b.u16), func(i int) bool { return b.u16[i] != o[i] }
		default:
			o := b.orig.([]byte)
			n, changed = len(b.u8), func(i int) bool { return b.u8[i] != o[i] }
		}
		for i := range n {
			p := i - ovHead
			if p >= 0 && p < len(b.writable) && b.writable[p] {
				continue
			}
			if changed(i) {
				return fmt.Errorf("argument %d: element %d (offset %d from its start, length %d) changed", bi, i, p, len(b.writable))
			}
		}
	}
	return nil
}

// ovCheck runs call with the generic kernels and the best ones, for both
// poisons, and compares the writable parts of every argument and call's
// returned values.
func ovCheck(t *testing.T, seed uint64, what string, call func(a *ovArena) []float32) bool {
	t.Helper()
	for poison := range 3 {
		var ar [2]*ovArena
		var res [2][]float32
		for g, gen := range []bool{true, false} {
			restore := UseGeneric(gen)
			ar[g] = newOvArena(seed, poison)
			res[g] = call(ar[g])
			restore()
		}
		defer ar[0].free()
		defer ar[1].free()
		for g, name := range []string{"generic", KernelName()} {
			if err := ar[g].checkGuards(); err != nil {
				t.Errorf("%s (%s, poison %d): wrote outside its slices: %v", what, name, poison, err)
				return false
			}
		}
		for i := range res[0] {
			if !ovClose(res[1][i], res[0][i]) {
				t.Errorf("%s (poison %d): result %d = %v, generic %v", what, poison, i, res[1][i], res[0][i])
				return false
			}
		}
		for bi, b := range ar[1].bufs {
			if b.f32 == nil {
				continue
			}
			w := ar[0].bufs[bi].f32
			for p, ok := range b.writable {
				if ok && !ovClose(b.f32[ovHead+p], w[ovHead+p]) {
					t.Errorf("%s (poison %d): argument %d[%d] = %v, generic %v", what, poison, bi, p, b.f32[ovHead+p], w[ovHead+p])
					return false
				}
			}
		}
	}
	return true
}

func TestNoOverread(t *testing.T) {
	if KernelName() == "generic" {
		t.Skip("no SIMD kernels on this CPU")
	}
	const maxLen = 80
	one := func(name string, lo int, call func(a *ovArena, n int) []float32) {
		t.Run(name, func(t *testing.T) {
			for n := lo; n <= maxLen; n++ {
				if !ovCheck(t, uint64(n), fmt.Sprintf("%s n=%d", name, n), func(a *ovArena) []float32 { return call(a, n) }) {
					return
				}
			}
		})
	}
	one("Dot", 0, func(a *ovArena, n int) []float32 { return []float32{Dot(a.f32(n), a.f32(n))} })
	one("Axpy", 0, func(a *ovArena, n int) []float32 { Axpy(a.f32w(n), 0.7, a.f32(n)); return nil })
	one("BF16ToF32", 0, func(a *ovArena, n int) []float32 { BF16ToF32(a.f32w(n), a.u16(n)); return nil })
	one("MaxF32", 1, func(a *ovArena, n int) []float32 { return []float32{MaxF32(a.f32(n))} })
	one("ExpF32", 0, func(a *ovArena, n int) []float32 { ExpF32(a.f32w(n), a.f32(n)); return nil })
	one("ExpSub", 0, func(a *ovArena, n int) []float32 { return []float32{ExpSub(a.f32w(n), a.f32(n), 0.5)} })
	one("ExpSubInPlace", 0, func(a *ovArena, n int) []float32 { x := a.f32w(n); return []float32{ExpSub(x, x, -0.25)} })
	one("Scale", 0, func(a *ovArena, n int) []float32 { Scale(a.f32w(n), -1.3); return nil })
	one("Softmax", 0, func(a *ovArena, n int) []float32 { Softmax(a.f32w(n)); return nil })
	one("SiLUMul", 0, func(a *ovArena, n int) []float32 { SiLUMul(a.f32w(n), a.f32(n)); return nil })

	// d = 0…80 columns × rows = 1…9 (and 0).
	rowsD := func(name string, call func(a *ovArena, d, rows int) []float32) {
		t.Run(name, func(t *testing.T) {
			for d := 0; d <= maxLen; d++ {
				for rows := 0; rows <= 9; rows++ {
					if !ovCheck(t, uint64(d*100+rows), fmt.Sprintf("%s d=%d rows=%d", name, d, rows), func(a *ovArena) []float32 { return call(a, d, rows) }) {
						return
					}
				}
			}
		})
	}
	rowsD("Scores", func(a *ovArena, d, rows int) []float32 {
		Scores(a.f32w(rows), a.f32(d), a.f32(rows*d), rows, 0.3)
		return nil
	})
	rowsD("ScoresBF16", func(a *ovArena, d, rows int) []float32 {
		ScoresBF16(a.f32w(rows), a.f32(d), a.u16(rows*d), rows, 0.3)
		return nil
	})
	rowsD("MixRows", func(a *ovArena, d, rows int) []float32 {
		MixRows(a.f32w(d), a.f32(rows), a.f32(rows*d), rows)
		return nil
	})
	rowsD("MixRowsBF16", func(a *ovArena, d, rows int) []float32 {
		MixRowsBF16(a.f32w(d), a.f32(rows), a.u16(rows*d), rows)
		return nil
	})

	// nq = 1…30 queries × d = 0…80 × rows = 1…9, with gaps between rows
	// of strided arguments for some nq.
	multi := func(name string, call func(a *ovArena, nq, d, rows int) []float32) {
		t.Run(name, func(t *testing.T) {
			for nq := 1; nq <= 30; nq++ {
				for d := 0; d <= maxLen; d++ {
					for rows := 1; rows <= 9; rows++ {
						if !ovCheck(t, uint64(nq*10000+d*100+rows), fmt.Sprintf("%s nq=%d d=%d rows=%d", name, nq, d, rows), func(a *ovArena) []float32 { return call(a, nq, d, rows) }) {
							return
						}
					}
				}
			}
		})
	}
	multi("ScoresMulti", func(a *ovArena, nq, d, rows int) []float32 {
		ld := rows + 3*(nq%2)
		dst := a.f32s(nq, ld, rows, true)
		ScoresMulti(dst, ld, a.f32(nq*d), nq, a.f32(rows*d), rows, 0.3)
		return nil
	})
	multi("MixRowsMulti", func(a *ovArena, nq, d, rows int) []float32 {
		ldO, ldP := d+5*(nq%2), rows+(nq%3)
		out := a.f32s(nq, ldO, d, true)
		if d == 0 {
			return nil // v must hold rows·d > 0 floats to give d
		}
		MixRowsMulti(out, ldO, a.f32s(nq, ldP, rows, false), ldP, nq, a.f32(rows*d), rows)
		return nil
	})

	// Beyond the ranges above: chunk boundaries of the multi-query kernels
	// (attnChunkBytes of keys or values), the 24-query kernel's largest d,
	// and MatMul's token tiles.
	t.Run("Chunks", func(t *testing.T) {
		for _, d := range []int{8, 31, 40, 72, 256, 257, 264} {
			kc := max(4, attnChunkBytes/(4*d)) &^ 3
			rc := max(1, attnChunkBytes/(4*d))
			for _, rows := range []int{kc - 1, kc, kc + 1, kc + 5, rc - 1, rc, rc + 1, rc + 3} {
				for _, nq := range []int{1, 3, 5, 24, 25, 29} {
					ok := ovCheck(t, uint64(d*1000+rows), fmt.Sprintf("ScoresMulti nq=%d d=%d rows=%d", nq, d, rows), func(a *ovArena) []float32 {
						ld := rows + 3*(nq%2)
						ScoresMulti(a.f32s(nq, ld, rows, true), ld, a.f32(nq*d), nq, a.f32(rows*d), rows, 0.3)
						return nil
					}) && ovCheck(t, uint64(d*1000+rows), fmt.Sprintf("MixRowsMulti nq=%d d=%d rows=%d", nq, d, rows), func(a *ovArena) []float32 {
						ldO, ldP := d+5*(nq%2), rows+(nq%3)
						MixRowsMulti(a.f32s(nq, ldO, d, true), ldO, a.f32s(nq, ldP, rows, false), ldP, nq, a.f32(rows*d), rows)
						return nil
					})
					if !ok {
						return
					}
				}
			}
		}
	})

	// Mat.Row of the blocked types widens one row through q8ToF32 or
	// q4ToF32; its neighbours must stay unread.
	for _, dt := range []DType{Q8_0, Q4} {
		t.Run("Row"+dt.String(), func(t *testing.T) {
			for cols := 32; cols <= 4*32; cols += 32 {
				for rows := 1; rows <= 3; rows++ {
					for r := range rows {
						ok := ovCheck(t, uint64(cols*100+rows*10+r), fmt.Sprintf("Row %v row %d of %d × %d", dt, r, rows, cols), func(a *ovArena) []float32 {
							w := &Mat{Rows: rows, Cols: cols, DType: dt}
							if dt == Q4 {
								w.Q4 = a.q4(rows, cols)
							} else {
								w.Q8 = a.q8(rows, cols)
							}
							w.Row(r, a.f32w(cols))
							return nil
						})
						if !ok {
							return
						}
					}
				}
			}
		})
	}

	// MatMul: n = 1…9 activation rows × rows = 1…9 weight rows × cols.
	pool := NewPool(2)
	defer pool.Close()
	for _, dt := range []DType{F32, BF16, Q8_0, Q4} {
		blocked := dt == Q8_0 || dt == Q4 // cols in whole blocks of 32
		t.Run("MatMul"+dt.String(), func(t *testing.T) {
			for cols := 0; cols <= maxLen+16; cols++ {
				if blocked && cols%32 != 0 || !blocked && cols > maxLen {
					continue
				}
				for rows := 1; rows <= 9; rows++ {
					for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 63, 64, 65, 67, 68} {
						if n > 9 && (rows > 4 || cols%16 != 0) {
							continue
						}
						ok := ovCheck(t, uint64(cols*100+rows*10+n), fmt.Sprintf("MatMul %v n=%d rows=%d cols=%d", dt, n, rows, cols), func(a *ovArena) []float32 {
							w := &Mat{Rows: rows, Cols: cols, DType: dt}
							switch dt {
							case F32:
								w.F32 = a.f32(rows * cols)
							case BF16:
								w.BF16 = a.u16(rows * cols)
							case Q8_0:
								w.Q8 = a.q8(rows, cols)
							case Q4:
								w.Q4 = a.q4(rows, cols)
							}
							y := a.f32w(n * rows)
							pool.MatMul(y, a.f32(n*cols), n, w)
							return nil
						})
						if !ok {
							return
						}
					}
				}
			}
		})
	}
}
