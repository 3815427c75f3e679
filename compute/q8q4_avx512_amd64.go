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
// the integer sums. Columns run in groups of 4 blocks (q8q4_gen.go
// describes the layouts):
//
//   - decode (fewer than q8q4PrefillTokens tokens): q8q4PrepVNNI lays out
//     each token's groups once per call, and tiles of R ≤ 3 raw weight
//     rows × T ≤ 4 tokens unpack each weight group in registers once per
//     tile, so up to 4 sequences read each weight byte once;
//   - prefill: activations and, once per pass of ≥ 64 tokens, each pair
//     of weight rows are unpacked and widened to pairs of groups in
//     scratch, and tiles of 2 rows × 4 tokens run 4 VPDPBUSD per float
//     scaling.
//
// Blocks past the last whole group are added in Go.

//go:noescape
func q8q4PrepVNNI(dst *byte, stride int, q *int8, d *float32, s *int32, groups, shift int)

//go:noescape
func q8q4Widen8(dst *byte, dstride int, src *byte, pairs int, token bool)

//go:noescape
func q8q4QuantizeAVX512(q *int8, d *float32, s *int32, x *float32, blocks int)

// q8q4TileFunc is a generated tile kernel: y[(k·T+i)·ldy+r] for r < R,
// i < T, k < tiles, from rows of w (stride rb bytes) and groups groups of
// prepared activations per tile at tp.
type q8q4TileFunc func(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)

// q8q4DecodeFunc is a generated decode tile kernel: a q8q4TileFunc over
// rtiles tiles of R rows, one after the other.
type q8q4DecodeFunc func(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles, rtiles int)

const (
	q8q4GroupBytes  = 256         // prepared bytes per token and group of 4 blocks
	q8q4WGroupBytes = 192         // unpacked bytes per weight row and group
	q8q4TileT       = 4           // tokens per full tile
	q8q4TileR       = 3           // weight rows per full tile
	q8q4Scratch     = 512 << 10   // prepared activations per pass
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
type q8q4Buf struct{ act, w, tmp []byte }

var q8q4Bufs = sync.Pool{New: func() any { return &q8q4Buf{act: make([]byte, q8q4Scratch)} }}

func matQ8_0VNNI(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matQVNNI(y, ldy, w, rows, a, ntok, Q8_0, &q8q4Q8_0Tiles, q8q4PrepWQ8_0)
}

func matQ4_0VNNI(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matQVNNI(y, ldy, w, rows, a, ntok, Q4_0, &q8q4Q4_0Tiles, q8q4PrepWQ4_0)
}

// matQVNNI computes the groups of 4 blocks with the tile kernels and
// adds the blocks past the last whole group in Go.
func matQVNNI(y []float32, ldy int, w []byte, rows int, a *qact, ntok int, dt DType, tiles *[q8q4TileR][q8q4TileT]q8q4DecodeFunc,
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
		if ntok >= q8q4PrefillTokens {
			_, bb := blockShape(dt)
			matQVNNIPrefill(sb, y, ldy, w, rb, rows, a, ntok, groups, shift, 4*bb, prepW)
		} else {
			matQVNNIDecode(sb, y, ldy, w, rb, rows, a, ntok, groups, shift, tiles)
		}
		q8q4Bufs.Put(sb)
	}
	if rest := groups * q8q4GroupCols; rest < cols {
		matQTail(y, ldy, w, rows, a, ntok, dt, rest, groups > 0)
	}
}

// q8q4PrefillTokens is the token count from which weight rows are
// unpacked once into scratch (and activations widened to pairs of
// groups) instead of once per tile of tokens.
const q8q4PrefillTokens = 3 * q8q4TileT

// matQVNNIDecode multiplies raw weight rows, unpacking each row group once
// per tile of up to 4 tokens: for decode steps of up to 4 sequences each
// weight byte is read once.
func matQVNNIDecode(sb *q8q4Buf, y []float32, ldy int, w []byte, rb, rows int, a *qact, ntok, groups, shift int, tiles *[q8q4TileR][q8q4TileT]q8q4DecodeFunc) {
	cols := a.cols
	buf := sb.act
	per := groups * q8q4GroupBytes // bytes per token
	if ntok*per > len(buf) {
		buf = make([]byte, ntok*per)
		sb.act = buf
	}
	for i := range ntok {
		k := i / q8q4TileT
		tsz := min(q8q4TileT, ntok-k*q8q4TileT)
		e := i * cols
		q8q4PrepVNNI(&buf[k*q8q4TileT*per+i%q8q4TileT*q8q4GroupBytes], tsz*q8q4GroupBytes,
			&a.q[e], &a.d[e/ActBlock], &a.s[e/16], groups, shift)
	}
	full, rem := ntok/q8q4TileT, ntok%q8q4TileT
	// All whole tiles of rows in one call, then the rest.
	for r := 0; r < rows; {
		nr := min(q8q4TileR, rows-r)
		rt := 1
		if nr == q8q4TileR {
			rt = (rows - r) / q8q4TileR
		}
		if full > 0 {
			tiles[nr-1][q8q4TileT-1](&y[r], ldy, &w[r*rb], rb, &buf[0], groups, full, rt)
		}
		if rem > 0 {
			tiles[nr-1][rem-1](&y[full*q8q4TileT*ldy+r], ldy, &w[r*rb], rb, &buf[full*q8q4TileT*per], groups, 1, rt)
		}
		r += rt * nr
	}
}

// matQVNNIPrefill runs the widened-pair kernels. Activations are prepared
// and widened in passes of as many tokens as the scratch holds (at least
// q8q4PassTokens, splitting the columns into chunks whose sums add up in
// y where a row is too long for that); in each pass every tile of 2
// weight rows is unpacked and widened once, then multiplied by all the
// pass's tokens. An odd last group is paired with zeros.
func matQVNNIPrefill(sb *q8q4Buf, y []float32, ldy int, w []byte, rb, rows int, a *qact, ntok, groups, shift int, gb int,
	prepW func(dst *byte, stride int, w *byte, groups int)) {
	const (
		tokPair = 384 // widened bytes per token and pair
		wPair   = 320 // widened bytes per weight row and pair
		R, T    = 2, q8q4TileT
	)
	cols := a.cols
	pairs := (groups + 1) / 2
	kc := pairs // pairs per column chunk
	if len(sb.act)/(kc*tokPair) < q8q4PassTokens {
		kc = max(1, len(sb.act)/(q8q4PassTokens*tokPair))
	}
	per := kc * tokPair
	tb := max(1, len(sb.act)/per) // tokens per pass
	if tb > T {
		tb -= tb % T
	}
	buf := sb.act
	if tb*per > len(buf) {
		buf = make([]byte, tb*per)
		sb.act = buf
	}
	// tmp holds one token's or one row's 4-block records before widening.
	sb.tmp = grow(sb.tmp, 2*kc*q8q4GroupBytes)
	sb.w = grow(sb.w, R*kc*wPair)
	tmp := sb.tmp
	for k0 := 0; k0 < pairs; k0 += kc {
		nk := min(kc, pairs-k0)
		ng := min(groups-2*k0, 2*nk) // groups in this chunk
		c0 := k0 * 2 * q8q4GroupCols // its first column
		add := 0
		if k0 > 0 {
			add = 1
		}
		per := nk * tokPair // this chunk's bytes per token
		for t0 := 0; t0 < ntok; t0 += tb {
			nt := min(tb, ntok-t0)
			for i := range nt {
				k := i / T
				tsz := min(T, nt-k*T)
				e := (t0+i)*cols + c0
				q8q4PrepVNNI(&tmp[0], q8q4GroupBytes, &a.q[e], &a.d[e/ActBlock], &a.s[e/16], ng, shift)
				if ng%2 != 0 {
					clear(tmp[ng*q8q4GroupBytes : (ng+1)*q8q4GroupBytes])
				}
				q8q4Widen8(&buf[k*T*per+i%T*tokPair], tsz*tokPair, &tmp[0], nk, true)
			}
			full, rem := nt/T, nt%T
			for r := 0; r < rows; r += R {
				nr := min(R, rows-r)
				for i := range nr {
					prepW(&tmp[0], q8q4WGroupBytes, &w[(r+i)*rb+2*k0*gb], ng)
					if ng%2 != 0 {
						clear(tmp[ng*q8q4WGroupBytes : (ng+1)*q8q4WGroupBytes])
					}
					q8q4Widen8(&sb.w[i*wPair], nr*wPair, &tmp[0], nk, false)
				}
				if full > 0 {
					q8q4P8Tiles[nr-1][T-1](&y[t0*ldy+r], ldy, &sb.w[0], add, &buf[0], nk, full)
				}
				if rem > 0 {
					q8q4P8Tiles[nr-1][rem-1](&y[(t0+full*T)*ldy+r], ldy, &sb.w[0], add, &buf[full*T*per], nk, 1)
				}
			}
		}
	}
}

// q8q4PassTokens is the fewest tokens a prefill pass should hold: each
// weight tile is unpacked once per pass.
const q8q4PassTokens = 64

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
