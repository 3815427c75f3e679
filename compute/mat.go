// Package compute holds kvserve's numeric kernels: matrix products over
// weight matrices of several storage types, attention helpers, norms and
// activations, and the worker pool that runs them in parallel. Each kernel
// has a portable Go version; faster versions for the running CPU are chosen
// at start-up (see kernels.go).
package compute

import (
	"fmt"
	"math"
)

// DType is how a weight matrix stores its elements.
type DType uint8

// Storage types of weight matrices.
const (
	F32  DType = iota // 32-bit IEEE floats
	BF16              // bfloat16: the top 16 bits of a float32
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("dtype(%d)", d)
}

// Mat is a row-major matrix of Rows × Cols weights. In kvserve it holds a
// linear layer as Hugging Face stores it: one row per output feature.
type Mat struct {
	Rows, Cols int
	DType      DType
	F32        []float32 // when DType == F32
	BF16       []uint16  // when DType == BF16
}

// Bytes returns the storage size of the matrix.
func (m *Mat) Bytes() int64 {
	switch m.DType {
	case BF16:
		return int64(len(m.BF16)) * 2
	}
	return int64(len(m.F32)) * 4
}

// Row writes row i of m as float32 into dst[:m.Cols].
func (m *Mat) Row(i int, dst []float32) {
	switch m.DType {
	case BF16:
		BF16ToF32(dst[:m.Cols], m.BF16[i*m.Cols:(i+1)*m.Cols])
	default:
		copy(dst[:m.Cols], m.F32[i*m.Cols:(i+1)*m.Cols])
	}
}

// BF16ToF32 widens bfloat16 values to float32 exactly.
func BF16ToF32(dst []float32, src []uint16) {
	kernels.bf16ToF32(dst, src)
}

func bf16ToF32Generic(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = math.Float32frombits(uint32(v) << 16)
	}
}

// F32ToBF16 rounds float32 values to bfloat16, to nearest even.
func F32ToBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		b := math.Float32bits(v)
		if b&0x7fffffff > 0x7f800000 { // NaN: keep it a NaN
			dst[i] = uint16(b>>16) | 0x40
			continue
		}
		b += 0x7fff + (b>>16)&1
		dst[i] = uint16(b >> 16)
	}
}

// F16ToF32 converts an IEEE half-precision value to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalise
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// tokenTile is how many activation rows MatMul streams against one weight
// row while that row is hot in cache.
const tokenTile = 64

// MatMul computes y[t][r] = Σ_c x[t][c] · w[r][c] for n activation rows:
// x is n × w.Cols and y is n × w.Rows, both row-major. Rows of w are split
// across the pool's workers.
func (p *Pool) MatMul(y, x []float32, n int, w *Mat) {
	rows, cols := w.Rows, w.Cols
	if len(x) < n*cols || len(y) < n*rows {
		panic(fmt.Sprintf("compute.MatMul: x has %d floats, y %d, for %d × %d·%d", len(x), len(y), n, rows, cols))
	}
	grain := max(1, 4096/max(1, cols*n)) // keep tiny products on one thread
	p.For(rows, grain, func(worker, lo, hi int) {
		var row []float32
		if w.DType != F32 {
			row = p.Scratch(worker, cols)
		}
		for t0 := 0; t0 < n; t0 += tokenTile {
			t1 := min(n, t0+tokenTile)
			for r := lo; r < hi; r++ {
				wr := row
				if w.DType == F32 {
					wr = w.F32[r*cols : (r+1)*cols]
				} else {
					w.Row(r, row)
				}
				t := t0
				for ; t+4 <= t1; t += 4 {
					var d [4]float32
					kernels.dot4(&d, wr, x[t*cols:(t+4)*cols], cols)
					y[t*rows+r] = d[0]
					y[(t+1)*rows+r] = d[1]
					y[(t+2)*rows+r] = d[2]
					y[(t+3)*rows+r] = d[3]
				}
				for ; t < t1; t++ {
					y[t*rows+r] = kernels.dot(wr, x[t*cols:(t+1)*cols])
				}
			}
		}
	})
}
