package compute

import (
	"fmt"
	"math"
)

// Numerics is how MatMul treats activations.
type Numerics int8

const (
	// Exact keeps activations in float32: quantized and bfloat16 weights
	// are widened exactly and every product and sum is float32. The golden
	// tests run in this mode.
	Exact Numerics = iota
	// Fast rounds activations the way llama.cpp computes: to int8 in blocks
	// of 32 (one float32 scale each) against Q8_0, Q4_0, Q4_K and Q6_K
	// weights, so the products run on 8-bit integer dot-product
	// instructions, and to bfloat16 against BF16 weights. F32 and Q4
	// weights are unaffected.
	Fast
)

// String returns "exact" or "fast".
func (n Numerics) String() string {
	if n == Fast {
		return "fast"
	}
	return "exact"
}

// ParseNumerics reads "exact" or "fast".
func ParseNumerics(s string) (Numerics, error) {
	switch s {
	case "exact":
		return Exact, nil
	case "fast":
		return Fast, nil
	}
	return Exact, fmt.Errorf("numerics %q: want exact or fast", s)
}

// SetNumerics sets how the pool's MatMul treats activations (MatMulIn
// chooses per call); a new pool starts Exact.
func (p *Pool) SetNumerics(n Numerics) {
	p.mu.Lock()
	p.numerics = n
	p.mu.Unlock()
}

// Numerics returns the pool's numerics mode.
func (p *Pool) Numerics() Numerics {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.numerics
}

// ActBlock is the number of activations that share one int8 scale.
const ActBlock = 32

// qact is a batch of activation rows quantized for the int8 kernels. Row t
// has cols values; block b of a row (ActBlock values) is q[t·cols+32b …]
// with scale d[t·cols/32+b], so value ≈ d·q, and its two halves of 16 have
// q sums s[t·cols/16+2b] and s[…+2b+1] (the integer sums let a kernel
// apply a weight block's offset, such as Q4_0's −8, once per block).
type qact struct {
	cols int
	q    []int8
	d    []float32
	s    []int32
}

// reset sizes a for rows × cols values, cols a multiple of ActBlock,
// reusing its buffers.
func (a *qact) reset(rows, cols int) {
	a.cols = cols
	a.q = grow(a.q, rows*cols)
	a.d = grow(a.d, rows*cols/ActBlock)
	a.s = grow(a.s, rows*cols/16)
}

// grow returns b with length n, reallocating only when its capacity is
// short.
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// quantizeActGeneric quantizes rows [lo, hi) of x (cols values each) into
// a: each block's scale is max|x|/127 and each value rounds to the nearest
// integer, halves away from zero.
func quantizeActGeneric(a *qact, x []float32, lo, hi int) {
	cols := a.cols
	for t := lo; t < hi; t++ {
		for b := 0; b < cols; b += ActBlock {
			xb := x[t*cols+b:][:ActBlock]
			var amax float32
			for _, v := range xb {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			d := amax / 127
			id := float32(0)
			if d != 0 {
				id = 1 / d
			}
			q := a.q[t*cols+b:][:ActBlock]
			var s0, s1 int32
			for i, v := range xb {
				r := int8(math.Round(float64(v * id)))
				q[i] = r
				if i < 16 {
					s0 += int32(r)
				} else {
					s1 += int32(r)
				}
			}
			a.d[(t*cols+b)/ActBlock] = d
			a.s[(t*cols+b)/16], a.s[(t*cols+b)/16+1] = s0, s1
		}
	}
}
