// Package compute holds kvserve's numeric kernels: matrix products over
// weight matrices of several storage types, attention helpers, norms and
// activations, and the worker pool that runs them in parallel. Each kernel
// has a portable Go version; faster versions for the running CPU are chosen
// at start-up (see kernels.go).
package compute

import (
	"fmt"
	"math"
	"unsafe"
)

// DType is how a weight matrix stores its elements.
type DType uint8

// Storage types of weight matrices.
const (
	F32  DType = iota // 32-bit IEEE floats
	BF16              // bfloat16: the top 16 bits of a float32
	Q8_0              // ggml Q8_0: blocks of 32 int8 with one float16 scale
	Q4                // kvserve's Q4: blocks of 32 4-bit codes with a float32 scale and offset
	Q4_0              // ggml Q4_0: blocks of 32 4-bit codes with one float16 scale (see ggml.go)
	Q4_K              // ggml Q4_K: super-blocks of 256 4-bit codes with 6-bit sub-block scales and mins
	Q6_K              // ggml Q6_K: super-blocks of 256 6-bit codes with int8 sub-block scales
	Q5_0              // ggml Q5_0: blocks of 32 5-bit codes with one float16 scale
)

// String returns the type's short name, such as "bf16".
func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case Q8_0:
		return "q8_0"
	case Q4:
		return "q4"
	case Q4_0:
		return "q4_0"
	case Q4_K:
		return "q4_k"
	case Q6_K:
		return "q6_k"
	case Q5_0:
		return "q5_0"
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
	// Q8 holds the raw ggml blocks of a Q8_0 matrix, row after row: see
	// NewQ8_0.
	Q8 []byte
	// Q4 holds the blocks of a Q4 matrix, row after row: see NewQ4.
	Q4 []byte
	// Blocks holds the ggml blocks of a Q4_0, Q5_0, Q4_K or Q6_K matrix, row
	// after row, as the GGUF file stores them: see NewBlocks.
	Blocks []byte
}

// Bytes returns the storage size of the matrix.
func (m *Mat) Bytes() int64 {
	switch m.DType {
	case BF16:
		return int64(len(m.BF16)) * 2
	case Q8_0:
		return int64(len(m.Q8))
	case Q4:
		return int64(len(m.Q4))
	case Q4_0, Q4_K, Q6_K, Q5_0:
		return int64(len(m.Blocks))
	}
	return int64(len(m.F32)) * 4
}

// Aliases reports whether m's weights live in b's memory, that is whether m
// was built over b without a copy.
func (m *Mat) Aliases(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	var p unsafe.Pointer
	switch {
	case m.DType == F32 && len(m.F32) > 0:
		p = unsafe.Pointer(&m.F32[0])
	case m.DType == BF16 && len(m.BF16) > 0:
		p = unsafe.Pointer(&m.BF16[0])
	case len(blocksOf(m)) > 0:
		p = unsafe.Pointer(&blocksOf(m)[0])
	}
	return p == unsafe.Pointer(&b[0])
}

// Row writes row i of m as float32 into dst[:m.Cols].
func (m *Mat) Row(i int, dst []float32) {
	switch m.DType {
	case BF16:
		BF16ToF32(dst[:m.Cols], m.BF16[i*m.Cols:(i+1)*m.Cols])
	case Q8_0:
		rb := q8RowBytes(m.Cols)
		kernels.q8ToF32(dst[:m.Cols], m.Q8[i*rb:(i+1)*rb])
	case Q4:
		rb := Q4RowBytes(m.Cols)
		kernels.q4ToF32(dst[:m.Cols], m.Q4[i*rb:(i+1)*rb])
	case Q4_0, Q4_K, Q6_K, Q5_0:
		rb := RowBytes(m.DType, m.Cols)
		kernels.widen(m.DType)(dst[:m.Cols], m.Blocks[i*rb:(i+1)*rb])
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

// tokenTile is how many activation rows MatMul streams against a block of
// weight rows while that block is hot in cache.
const tokenTile = 64

// matMulJob holds one MatMul's arguments while the pool's workers run it.
type matMulJob struct {
	ks    *kernelSet
	y, x  []float32
	n     int
	w     *Mat
	block int // weight rows per unit of work handed to workers
}

// MatMul computes y[t][r] = Σ_c x[t][c] · w[r][c] for n activation rows:
// x is n × w.Cols and y is n × w.Rows, both row-major, in the pool's
// numerics (see SetNumerics). Rows of w are split across the pool's
// workers. MatMul allocates nothing once the pool's buffers have grown to
// the largest product.
func (p *Pool) MatMul(y, x []float32, n int, w *Mat) { p.matMulIn(&kernels, -1, y, x, n, w) }

// MatMulIn is MatMul in the given numerics, whatever the pool's: in Fast,
// activations are first rounded for the weight's type (see Numerics).
func (p *Pool) MatMulIn(nm Numerics, y, x []float32, n int, w *Mat) {
	p.matMulIn(&kernels, nm, y, x, n, w)
}

// weightsShort reports whether w holds fewer weights than its shape needs.
func weightsShort(w *Mat) bool {
	rows, cols := w.Rows, w.Cols
	switch w.DType {
	case F32:
		return len(w.F32) < rows*cols
	case BF16:
		return len(w.BF16) < rows*cols
	case Q8_0:
		return cols%Q8Block != 0 || len(w.Q8) < rows*q8RowBytes(cols)
	case Q4:
		return cols%Q4Block != 0 || len(w.Q4) < rows*Q4RowBytes(cols)
	case Q4_0, Q4_K, Q6_K, Q5_0:
		e, _ := blockShape(w.DType)
		return cols%e != 0 || len(w.Blocks) < rows*RowBytes(w.DType, cols)
	}
	panic(fmt.Sprintf("compute.MatMul: unknown %v", w.DType))
}

// blocksOf returns the block bytes of a block-type matrix.
func blocksOf(w *Mat) []byte {
	switch w.DType {
	case Q8_0:
		return w.Q8
	case Q4:
		return w.Q4
	}
	return w.Blocks
}

// matMul is MatMul with the given kernels.
func (p *Pool) matMul(ks *kernelSet, y, x []float32, n int, w *Mat) { p.matMulIn(ks, -1, y, x, n, w) }

// matMulIn runs a product in numerics nm, or in the pool's when nm < 0.
func (p *Pool) matMulIn(ks *kernelSet, nm Numerics, y, x []float32, n int, w *Mat) {
	rows, cols := w.Rows, w.Cols
	if len(x) < n*cols || len(y) < n*rows {
		panic(fmt.Sprintf("compute.MatMul: x has %d floats, y %d, for %d × %d·%d", len(x), len(y), n, rows, cols))
	}
	if weightsShort(w) {
		panic(fmt.Sprintf("compute.MatMul: %v matrix of %d × %d has too few weights", w.DType, rows, cols))
	}
	if n <= 0 || rows <= 0 {
		return
	}
	if cols == 0 {
		clear(y[:n*rows])
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if nm < 0 {
		nm = p.numerics
	}
	if nm == Fast && ks.fast(w.DType) {
		p.matMulFast(ks, y, x, n, w)
		return
	}
	block := ks.gemmR
	if w.DType != F32 && n < ks.gemmT {
		block = 16
	}
	grain := max(1, 4096/max(1, cols*n)) // rows; keep tiny products on one thread
	grain = (grain + block - 1) / block
	p.mm = matMulJob{ks: ks, y: y, x: x, n: n, w: w, block: block}
	p.forLocked((rows+block-1)/block, grain, p.mmRun)
	p.mm = matMulJob{}
}

// runMatMul computes the output columns of weight-row blocks [blo, bhi) of
// the pool's current MatMul.
func (p *Pool) runMatMul(worker, blo, bhi int) {
	j := &p.mm
	ks, w, n, x, y := j.ks, j.w, j.n, j.x, j.y
	rows, cols := w.Rows, w.Cols
	lo, hi := blo*j.block, min(bhi*j.block, rows)
	if w.DType != F32 && n < ks.gemmT {
		p.gemvExact(worker, lo, hi)
		return
	}

	// Many tokens: widen a block of R weight rows into scratch once per
	// tile of tokens and run the R-row kernel over the tile. Outputs go
	// through scratch, not the stack: kernels called through func values
	// make their arguments escape.
	R, T := ks.gemmR, ks.gemmT
	sc := p.Scratch(worker, R*cols+4)
	buf, e := sc[:R*cols], (*[4]float32)(sc[R*cols:])
	rb := RowBytes(w.DType, cols)
	for t0 := 0; t0 < n; t0 += tokenTile {
		t1 := min(n, t0+tokenTile)
		for r := lo; r < hi; r += R {
			nr := min(R, hi-r)
			var wr []float32
			switch w.DType {
			case F32:
				wr = w.F32[r*cols : (r+nr)*cols]
			case BF16:
				wr = buf[:nr*cols]
				ks.bf16ToF32(wr, w.BF16[r*cols:(r+nr)*cols])
			default:
				wr = buf[:nr*cols]
				ks.widen(w.DType)(wr, blocksOf(w)[r*rb:(r+nr)*rb])
			}
			t := t0
			if nr == R {
				nt := (t1 - t) / T * T
				ks.gemm(y[t*rows+r:], rows, wr, cols, x[t*cols:], cols, cols, nt)
				t += nt
			} else {
				for ; t+4 <= t1; t += 4 {
					for rr := range nr {
						ks.dot4(e, wr[rr*cols:(rr+1)*cols], x[t*cols:(t+4)*cols], cols)
						for tt := range 4 {
							y[(t+tt)*rows+r+rr] = e[tt]
						}
					}
				}
			}
			for ; t < t1; t++ {
				xt := x[t*cols : (t+1)*cols]
				for rr := range nr {
					y[t*rows+r+rr] = ks.dot(wr[rr*cols:(rr+1)*cols], xt)
				}
			}
		}
	}
}

// gemvExact is runMatMul for few tokens and widened weights: it streams the
// weights once, a chunk of rows at a time so that they stay in cache across
// the tokens, widening them in registers where a fused kernel exists and
// into scratch otherwise.
func (p *Pool) gemvExact(worker, lo, hi int) {
	j := &p.mm
	ks, w, n, x, y := j.ks, j.w, j.n, j.x, j.y
	rows, cols := w.Rows, w.Cols
	rb := RowBytes(w.DType, cols)
	const chunk = 64
	for r := lo; r < hi; r += chunk {
		r1 := min(hi, r+chunk)
		switch w.DType {
		case Q4_0, Q4_K, Q6_K, Q5_0: // no fused kernel: widen a few rows at a time
			const few = 4
			buf := p.Scratch(worker, few*cols)
			for r0 := r; r0 < r1; r0 += few {
				nr := min(few, r1-r0)
				ks.widen(w.DType)(buf[:nr*cols], w.Blocks[r0*rb:(r0+nr)*rb])
				for t := range n {
					xt := x[t*cols : (t+1)*cols]
					for rr := range nr {
						y[t*rows+r0+rr] = ks.dot(buf[rr*cols:(rr+1)*cols], xt)
					}
				}
			}
			continue
		}
		for t := range n {
			yt, xt := y[t*rows+r:t*rows+r1], x[t*cols:(t+1)*cols]
			switch w.DType {
			case Q8_0:
				ks.dotQ8(yt, w.Q8[r*rb:r1*rb], xt, cols)
			case Q4:
				ks.dotQ4(yt, w.Q4[r*rb:r1*rb], xt, cols)
			default:
				ks.dotBF16(yt, w.BF16[r*cols:r1*cols], cols, xt, cols)
			}
		}
	}
}
