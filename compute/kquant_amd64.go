//go:build amd64 && !purego

package compute

import "sync"

//go:generate go run kquant_gen.go

// The AVX-512 VNNI kernels for Q4_K and Q6_K weights (kquant_avx512_amd64.s,
// written by kquant_gen.go). VPDPBUSD sums four products of unsigned weight
// codes and signed activations into each 32-bit lane. The codes of a block
// are unpacked where they lie (nibbles, and Q6_K's high bits, with shifts
// and masks) and their dwords transposed within 128-bit lanes, so that
// lane j of each of the block's four 64-byte chunks belongs to one
// sub-block (q4kSub, q6kSub in kquant_gen.go); the activations are
// rearranged once per call into the same order. Four VPDPBUSD per block
// and row then leave each sub-block's integer sum in fixed lanes, and the
// sub-block scales (and Q4_K's mins, Q6_K's −32 through the activation
// sums) apply once per block as float vectors. Weight rows go in pairs; a
// kernel keeps G ≤ 8 tokens' sums of both rows in registers over a tile
// of up to 8 blocks, so each weight block is unpacked once per 8 tokens,
// and prefetches the rows two pairs ahead. A lone Q6_K token goes to
// q6kMat1AVX512, which skips the transpose and sums with shuffles.

//go:noescape
func q4kPrepAVX512(act *byte, tab *float32, q *int8, d *float32, s *int32, nb, grp int)

//go:noescape
func q6kPrep1AVX512(act *byte, tab *float32, q *int8, d *float32, s *int32, nb, grp int)

//go:noescape
func q6kMat1AVX512(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kPrepAVX512(act *byte, tab *float32, q *int8, d *float32, s *int32, nb, grp int)

type kqKernel func(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G1(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G2(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G3(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G4(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G5(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G6(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G7(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q4kMatAVX512G8(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G1(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G2(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G3(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G4(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G5(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G6(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G7(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

//go:noescape
func q6kMatAVX512G8(y *float32, ldy int, w *byte, rb, rows int, act *byte, tab *float32, nb, acc int)

var (
	q4kMatAVX512 = [9]kqKernel{nil, q4kMatAVX512G1, q4kMatAVX512G2, q4kMatAVX512G3, q4kMatAVX512G4,
		q4kMatAVX512G5, q4kMatAVX512G6, q4kMatAVX512G7, q4kMatAVX512G8}
	q6kMatAVX512 = [9]kqKernel{nil, q6kMatAVX512G1, q6kMatAVX512G2, q6kMatAVX512G3, q6kMatAVX512G4,
		q6kMatAVX512G5, q6kMatAVX512G6, q6kMatAVX512G7, q6kMatAVX512G8}
)

// kqGroup is the most tokens one kernel call keeps in registers.
const kqGroup = 8

// kqTile is the most blocks of a row one kernel call covers: 8 tokens'
// rearranged activations of 8 blocks (24 KiB) stay in L1.
const kqTile = 8

// kqScratch holds one token group's rearranged activations: act, 256
// bytes per block and token (block-major, so a kernel finds token t of a
// block at a fixed offset), and tab, 32 four-byte values per block and
// token.
type kqScratch struct {
	act []byte
	tab []float32
}

var kqScratchPool = sync.Pool{New: func() any { return new(kqScratch) }}

type kqPrep func(act *byte, tab *float32, q *int8, d *float32, s *int32, nb, grp int)

// matKQuant runs a K-quant kernel family over rows × ntok: for each group
// of up to 8 tokens it rearranges their activations and runs the group's
// kernel over all rows.
func matKQuant(y []float32, ldy int, w []byte, rows int, a *qact, ntok int, blockBytes int, prep kqPrep, kern *[9]kqKernel, prep1 kqPrep, kern1 kqKernel) {
	if rows <= 0 || ntok <= 0 {
		return
	}
	cols := a.cols
	nb := cols / QKBlock
	if nb == 0 {
		for t := range ntok {
			clear(y[t*ldy : t*ldy+rows])
		}
		return
	}
	rb := nb * blockBytes
	// Bounds of everything the kernels read and write.
	_, _ = w[rows*rb-1], y[(ntok-1)*ldy+rows-1]
	_, _, _ = a.q[ntok*cols-1], a.d[ntok*cols/ActBlock-1], a.s[ntok*cols/16-1]
	s := kqScratchPool.Get().(*kqScratch)
	for t0 := 0; t0 < ntok; t0 += kqGroup {
		g := min(kqGroup, ntok-t0)
		s.act = grow(s.act, nb*g*QKBlock)
		s.tab = grow(s.tab, nb*g*32)
		pr := prep
		if g == 1 && kern1 != nil {
			pr = prep1
		}
		for t := range g {
			e := (t0 + t) * cols
			pr(&s.act[t*QKBlock], &s.tab[t*32], &a.q[e], &a.d[e/ActBlock], &a.s[e/16], nb, g)
		}
		k := kern[g]
		if g == 1 && kern1 != nil {
			k = kern1
		}
		// Column tiles of kqTile blocks keep a tile's activations in L1
		// while every row pair passes; later tiles add to y.
		for b0 := 0; b0 < nb; b0 += kqTile {
			acc := 0
			if b0 > 0 {
				acc = 1
			}
			k(&y[t0*ldy], ldy, &w[b0*blockBytes], rb, rows, &s.act[b0*g*QKBlock], &s.tab[b0*g*32], min(kqTile, nb-b0), acc)
		}
	}
	kqScratchPool.Put(s)
}

func matQ4KAVX512(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matKQuant(y, ldy, w, rows, a, ntok, Q4KBlockBytes, q4kPrepAVX512, &q4kMatAVX512, nil, nil)
}

// matQ6KAVX512 sends a lone token to q6kMat1AVX512, which unpacks with
// fewer operations and sums with more: the better trade for one token.
func matQ6KAVX512(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matKQuant(y, ldy, w, rows, a, ntok, Q6KBlockBytes, q6kPrepAVX512, &q6kMatAVX512, q6kPrep1AVX512, q6kMat1AVX512)
}

//go:noescape
func q4kMatAVX2(y *float32, ldy int, w *byte, rb, rows int, q *int8, d *float32, s *int32, cols, ntok int)

//go:noescape
func q6kMatAVX2(y *float32, ldy int, w *byte, rb, rows int, q *int8, d *float32, s *int32, cols, ntok int)

// matKQuantAVX2 checks bounds and runs an AVX2 K-quant kernel, which reads
// the activations as quantized (no rearranging).
func matKQuantAVX2(y []float32, ldy int, w []byte, rows int, a *qact, ntok int, blockBytes int,
	kern func(y *float32, ldy int, w *byte, rb, rows int, q *int8, d *float32, s *int32, cols, ntok int)) {
	if rows <= 0 || ntok <= 0 {
		return
	}
	cols := a.cols
	nb := cols / QKBlock
	if nb == 0 {
		for t := range ntok {
			clear(y[t*ldy : t*ldy+rows])
		}
		return
	}
	rb := nb * blockBytes
	_, _ = w[rows*rb-1], y[(ntok-1)*ldy+rows-1]
	_, _, _ = a.q[ntok*cols-1], a.d[ntok*cols/ActBlock-1], a.s[ntok*cols/16-1]
	kern(&y[0], ldy, &w[0], rb, rows, &a.q[0], &a.d[0], &a.s[0], cols, ntok)
}

func matQ4KAVX2(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matKQuantAVX2(y, ldy, w, rows, a, ntok, Q4KBlockBytes, q4kMatAVX2)
}

func matQ6KAVX2(y []float32, ldy int, w []byte, rows int, a *qact, ntok int) {
	matKQuantAVX2(y, ldy, w, rows, a, ntok, Q6KBlockBytes, q6kMatAVX2)
}

//go:noescape
func q4kToF32AVX2(dst *float32, src *byte, nb int)

//go:noescape
func q6kToF32AVX2(dst *float32, src *byte, nb int)

func q4kToF32AVX2Go(dst []float32, src []byte) {
	nb := len(dst) / QKBlock
	if nb == 0 {
		return
	}
	_ = src[nb*Q4KBlockBytes-1]
	q4kToF32AVX2(&dst[0], &src[0], nb)
}

func q6kToF32AVX2Go(dst []float32, src []byte) {
	nb := len(dst) / QKBlock
	if nb == 0 {
		return
	}
	_ = src[nb*Q6KBlockBytes-1]
	q6kToF32AVX2(&dst[0], &src[0], nb)
}
