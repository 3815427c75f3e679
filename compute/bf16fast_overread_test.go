//go:build linux && amd64 && !purego

package compute

import (
	"fmt"
	"testing"
)

// TestBF16FastNoOverread is TestNoOverread's guard check (poisoned
// neighbours, an unmapped page right after each slice) for MatMul of
// bfloat16 weights in Fast numerics, whose kernels load the last
// cols mod 32 elements of each row under a mask: n = 1, 3, 4, 5, 8, 9, 64 and 67 tokens
// × 1…9 rows × cols = 0…80, plus row lengths around a multiple of 32.
func TestBF16FastNoOverread(t *testing.T) {
	if KernelName() == "generic" || !kernels.fast(BF16) {
		t.Skip("no SIMD bf16 dot-product kernel on this CPU: Fast MatMul of BF16 runs Exact")
	}
	pool := NewPool(2)
	defer pool.Close()
	pool.SetNumerics(Fast)
	colsList := []int{127, 128, 129, 161}
	for cols := 0; cols <= 80; cols++ {
		colsList = append(colsList, cols)
	}
	for _, cols := range colsList {
		for rows := 1; rows <= 9; rows++ {
			for _, n := range []int{1, 3, 4, 5, 8, 9, 64, 67} {
				if n > 9 && rows%4 != 1 && cols%16 != 1 {
					continue
				}
				ok := ovCheck(t, uint64(cols*100+rows*10+n), fmt.Sprintf("Fast MatMul BF16 n=%d rows=%d cols=%d", n, rows, cols), func(a *ovArena) []float32 {
					w := &Mat{Rows: rows, Cols: cols, DType: BF16, BF16: a.u16(rows * cols)}
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
}
