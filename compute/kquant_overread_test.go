//go:build linux && amd64 && !purego

package compute

import (
	"fmt"
	"testing"
)

// kq returns rows × cols Q4_K or Q6_K weights (cols a multiple of 256) in
// the arena: random codes, moderate scales, and guard bytes whose float16
// reading is huge (or NaN), so a kernel that reads a block past its slice
// gets a result far from the generic one.
func (a *ovArena) kq(dt DType, rows, cols int) []byte {
	n := rows * RowBytes(dt, cols)
	pb := byte(0x7b)
	if a.poison == 1 {
		pb = 0xff
	}
	b := &ovBuf{u8: a.mem(ovHead + n + a.tail()), writable: make([]bool, n)}
	for i := range b.u8 {
		b.u8[i] = pb
	}
	body := b.u8[ovHead : ovHead+n]
	_, bb := blockShape(dt)
	for i := 0; i < n; i += bb {
		blk := body[i : i+bb]
		for j := range blk {
			blk[j] = byte(a.rng.IntN(256))
		}
		h := func(off int) {
			s := 0x2400 + uint16(a.rng.IntN(0x100)) // about 1/64
			blk[off], blk[off+1] = byte(s), byte(s>>8)
		}
		if dt == Q4_K {
			h(0)
			h(2)
		} else {
			for j := 192; j < 208; j++ {
				blk[j] = byte(int8(a.rng.IntN(17) - 8))
			}
			h(208)
		}
	}
	b.orig = append([]byte(nil), b.u8...)
	a.bufs = append(a.bufs, b)
	return body[:n:n]
}

// TestKQuantNoOverread runs MatMul on Q4_K and Q6_K weights in both
// numerics (Fast: the int8 kernels; Exact: the widening kernels) with
// every argument between guards, as TestNoOverread does for the other
// types.
func TestKQuantNoOverread(t *testing.T) {
	if KernelName() == "generic" {
		t.Skip("no SIMD kernels on this CPU")
	}
	pool := NewPool(2)
	defer pool.Close()
	for _, num := range []Numerics{Fast, Exact} {
		pool.SetNumerics(num)
		for _, dt := range []DType{Q4_K, Q6_K} {
			t.Run(fmt.Sprintf("%v/%v", dt, num), func(t *testing.T) {
				for _, cols := range []int{256, 512, 2304} {
					for rows := 1; rows <= 9; rows++ {
						for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 17} {
							if cols > 512 && n%4 != 1 {
								continue // row tiles: a few token counts are enough
							}
							ok := ovCheck(t, uint64(cols*1000+rows*100+n), fmt.Sprintf("MatMul %v %v n=%d rows=%d cols=%d", dt, num, n, rows, cols), func(a *ovArena) []float32 {
								w := &Mat{Rows: rows, Cols: cols, DType: dt, Blocks: a.kq(dt, rows, cols)}
								pool.MatMul(a.f32w(n*rows), a.f32(n*cols), n, w)
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
}
