//go:build amd64 && !purego

package compute

import (
	"sync"

	"golang.org/x/sys/cpu"
)

//go:generate go run q8q4_gen.go

// The AVX-512 VNNI kernels of Fast-mode Q8_0 and Q4_0 products. Weights
// become the unsigned operand of VPDPBUSD (Q4_0 nibbles 0…15; Q8_0 bytes
// with the sign bit flipped, w+128) and activations the signed one; each
// block's offset (8 or 128 times the activation block sum) is taken off in
// the integer sums. Columns run in groups of 4 blocks: q8q4PrepVNNI lays
// out a group's activations for each token once per call, and a tile
// kernel (q8q4_gen.go) multiplies R ≤ 4 weight rows by T ≤ 4 tokens,
// unpacking each weight group once for its T tokens. Blocks past the last
// whole group are added in Go.

//go:noescape
func q8q4PrepVNNI(dst *byte, stride int, q *int8, d *float32, s *int32, groups, shift int)

//go:noescape
func q8q4QuantizeAVX512(q *int8, d *float32, s *int32, x *float32, blocks int)

// q8q4TileFunc is a generated tile kernel: y[(k·T+i)·ldy+r] for r < R,
// i < T, k < tiles, from rows of w (stride rb bytes) and groups groups of
// prepared activations per tile at tp.
type q8q4TileFunc func(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)

const (
	q8q4GroupBytes  = 256         // prepared bytes per token and group of 4 blocks
	q8q4WGroupBytes = 192         // prepared bytes per weight row and group
	q8q4TileT       = 4           // tokens per full tile
	q8q4TileR       = 3           // weight rows per full tile
	q8q4Scratch     = 256 << 10   // prepared activations per pass
	q8q4GroupCols   = 4 * Q8Block // columns per group
)

// hasVNNI reports whether the VNNI kernels run here.
func hasVNNI() bool { return hasAVX512() && cpu.X86.HasAVX512VNNI }

// useVNNI installs the VNNI kernels of Q8_0 and Q4_0 and the AVX-512
// activation quantizer in ks.
func useVNNI(ks *kernelSet) {
	ks.quantizeAct = quantizeActAVX512
	ks.matQ8_0 = matQ8_0VNNI
	ks.matQ4_0 = matQ4_0VNNI
}

func quantizeActAVX512(a *qact, x []float32, lo, hi int) {
	if hi <= lo {
		return
	}
	cols := a.cols
	n := (hi - lo) * cols
	if n == 0 {
		return
	}
	b := lo * cols
	_, _, _, _ = x[b+n-1], a.q[b+n-1], a.d[(b+n)/ActBlock-1], a.s[(b+n)/16-1]
	q8q4QuantizeAVX512(&a.q[b], &a.d[b/ActBlock], &a.s[b/16], &x[b], n/ActBlock)
}

// q8q4Buf is scratch for prepared activations and weights.
type q8q4Buf struct{ act, w []byte }

var q8q4Bufs = sync.Pool{New: func() any { return &q8q4Buf{act: make([]byte, q8q4Scratch)} }}

func matQ8_0VNNI(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matQVNNI(y, ldy, w, rows, a, ntok, Q8_0, &q8q4Q8_0Tiles, q8q4PrepWQ8_0)
}

func matQ4_0VNNI(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matQVNNI(y, ldy, w, rows, a, ntok, Q4_0, &q8q4Q4_0Tiles, q8q4PrepWQ4_0)
}

// matQVNNI runs the tiles over all rows and tokens. Activations are
// prepared in passes of as many tokens as the scratch holds; where a pass
// has more than 2 tiles of tokens, each tile of weight rows is prepared
// once too (prepW) so that its unpacking is not repeated per token tile.
func matQVNNI(y []float32, ldy int, w []byte, rows int, a *qact, ntok int, dt DType, tiles *[q8q4TileR][q8q4TileT]q8q4TileFunc,
	prepW func(dst *byte, stride int, w *byte, groups int)) {
	if rows <= 0 || ntok <= 0 {
		return
	}
	cols := a.cols
	groups := cols / q8q4GroupCols
	rb := RowBytes(dt, cols)
	// Bounds of everything the assembly reads and writes.
	_, _ = y[(ntok-1)*ldy+rows-1], w[rows*rb-1]
	_, _, _ = a.q[ntok*cols-1], a.d[ntok*cols/ActBlock-1], a.s[ntok*cols/16-1]
	if groups > 0 {
		shift := 3 // Q4_0: q−8
		if dt == Q8_0 {
			shift = 7 // Q8_0: (w+128) − 128
		}
		sb := q8q4Bufs.Get().(*q8q4Buf)
		buf := sb.act
		per := groups * q8q4GroupBytes // bytes per token
		tb := max(1, len(buf)/per)     // tokens per pass
		if tb > q8q4TileT {
			tb -= tb % q8q4TileT
		}
		if tb*per > len(buf) {
			buf = make([]byte, tb*per)
		}
		for t0 := 0; t0 < ntok; t0 += tb {
			nt := min(tb, ntok-t0)
			for i := range nt {
				k := i / q8q4TileT
				tsz := min(q8q4TileT, nt-k*q8q4TileT)
				e := (t0 + i) * cols
				q8q4PrepVNNI(&buf[k*q8q4TileT*per+i%q8q4TileT*q8q4GroupBytes], tsz*q8q4GroupBytes,
					&a.q[e], &a.d[e/ActBlock], &a.s[e/16], groups, shift)
			}
			full, rem := nt/q8q4TileT, nt%q8q4TileT
			kern := tiles
			if full > 2 {
				kern = &q8q4PTiles
				sb.w = grow(sb.w, q8q4TileR*groups*q8q4WGroupBytes)
			}
			for r := 0; r < rows; r += q8q4TileR {
				nr := min(q8q4TileR, rows-r)
				wp, wrb := &w[r*rb], rb
				if kern == &q8q4PTiles {
					for i := range nr {
						prepW(&sb.w[i*q8q4WGroupBytes], nr*q8q4WGroupBytes, &w[(r+i)*rb], groups)
					}
					wp, wrb = &sb.w[0], 0
				}
				if full > 0 {
					kern[nr-1][q8q4TileT-1](&y[t0*ldy+r], ldy, wp, wrb, &buf[0], groups, full)
				}
				if rem > 0 {
					kern[nr-1][rem-1](&y[(t0+full*q8q4TileT)*ldy+r], ldy, wp, wrb, &buf[full*q8q4TileT*per], groups, 1)
				}
			}
		}
		q8q4Bufs.Put(sb)
	}
	if rest := groups * q8q4GroupCols; rest < cols {
		matQTail(y, ldy, w, rows, a, ntok, dt, rest, groups > 0)
	}
}

// matQTail computes the Q8_0 or Q4_0 products over columns [from, cols),
// adding them to y when add is set, else setting y.
func matQTail(y []float32, ldy int, w []byte, rows int, a *qact, ntok int, dt DType, from int, add bool) {
	cols := a.cols
	rb := RowBytes(dt, cols)
	_, bb := blockShape(dt)
	for r := range rows {
		row := w[r*rb : (r+1)*rb]
		for t := range ntok {
			var sum float32
			for c := from; c < cols; c += ActBlock {
				blk := row[c/ActBlock*bb:][:bb]
				e := t*cols + c
				aq := a.q[e:][:ActBlock]
				var s int32
				if dt == Q8_0 {
					for i, v := range blk[2:] {
						s += int32(int8(v)) * int32(aq[i])
					}
				} else {
					for j, v := range blk[2:] {
						s += int32(v&15)*int32(aq[j]) + int32(v>>4)*int32(aq[j+16])
					}
					s -= 8 * (a.s[e/16] + a.s[e/16+1])
				}
				sum += f16At(blk) * a.d[e/ActBlock] * float32(s)
			}
			if add {
				y[t*ldy+r] += sum
			} else {
				y[t*ldy+r] = sum
			}
		}
	}
}
