package compute

import (
	"encoding/binary"
	"fmt"
)

// ggml block layouts that kvserve keeps as they are in a GGUF file, so a
// mapped file is used in place and the same bytes give the same speed
// class as llama.cpp. Each row of a matrix is a run of whole blocks.
//
//	Q4_0: 32 elements in 18 bytes: half d | qs[16]. Element j is the low
//	      nibble of qs[j] and element j+16 its high nibble; value d·(q−8).
//	Q5_0: 32 elements in 22 bytes: half d | qh (little-endian uint32) |
//	      qs[16]. Nibbles as in Q4_0; element j's fifth bit is bit j of
//	      qh; value d·(q−16).
//	Q4_K: 256 elements in 144 bytes: half d | half dmin | scales[12] |
//	      qs[128]. Eight sub-blocks of 32 with 6-bit scales and mins
//	      (q4kScaleMin in q4.go); each 64 elements use 32 qs bytes, the first 32
//	      elements their low nibbles and the next 32 their high nibbles.
//	      Value d·sc·q − dmin·m.
//	Q6_K: 256 elements in 210 bytes: ql[128] | qh[64] | int8 scales[16] |
//	      half d. Each half of 128 elements uses 64 ql, 32 qh bytes and 8
//	      scales: for l < 32, elements l, l+32, l+64, l+96 take their low
//	      4 bits from the low nibble of ql[l], the low nibble of ql[l+32],
//	      the high nibble of ql[l] and the high nibble of ql[l+32], and
//	      their high 2 bits from bit pairs 0, 2, 4 and 6 of qh[l]. Sixteen
//	      sub-blocks of 16, each with its scale. Value d·sc·(q−32).
//
// The layouts are ggml's, from its public format description (ggml-common.h
// in ggerganov/llama.cpp); the code here is kvserve's.
const (
	Q4_0Block, Q4_0BlockBytes = 32, 18
	Q5_0BlockBytes            = 22  // 32 elements
	QKBlock                   = 256 // elements per Q4_K or Q6_K block
	Q4KBlockBytes             = 144
	Q6KBlockBytes             = 210
)

// blockShape returns the elements and bytes of one block of a block type.
func blockShape(dt DType) (elems, bytes int) {
	switch dt {
	case Q8_0:
		return Q8Block, Q8BlockBytes
	case Q4:
		return Q4Block, Q4BlockBytes
	case Q4_0:
		return Q4_0Block, Q4_0BlockBytes
	case Q5_0:
		return Q4_0Block, Q5_0BlockBytes
	case Q4_K:
		return QKBlock, Q4KBlockBytes
	case Q6_K:
		return QKBlock, Q6KBlockBytes
	}
	return 0, 0
}

// RowBytes returns the bytes of one row of cols elements of a block type
// (Q8_0, Q4, Q4_0, Q5_0, Q4_K, Q6_K), cols a multiple of its block, or 0 for
// other types.
func RowBytes(dt DType, cols int) int {
	e, b := blockShape(dt)
	if e == 0 {
		return 0
	}
	return cols / e * b
}

// NewBlocks returns a rows × cols matrix of a ggml block type (Q4_0, Q5_0,
// Q4_K or Q6_K) over raw, the blocks of its rows in order. cols must be a
// multiple of the type's block and raw exactly rows·RowBytes long. The
// matrix keeps raw without copying, so raw may be a mapped file.
func NewBlocks(dt DType, rows, cols int, raw []byte) (*Mat, error) {
	switch dt {
	case Q4_0, Q5_0, Q4_K, Q6_K:
	default:
		return nil, fmt.Errorf("compute: NewBlocks of %v: not a ggml block type", dt)
	}
	e, _ := blockShape(dt)
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("compute: %v matrix of %d × %d", dt, rows, cols)
	}
	if cols%e != 0 {
		return nil, fmt.Errorf("compute: %v matrix of %d columns: not a multiple of %d", dt, cols, e)
	}
	if want := rows * RowBytes(dt, cols); len(raw) != want {
		return nil, fmt.Errorf("compute: %v matrix of %d × %d needs %d bytes, got %d", dt, rows, cols, want, len(raw))
	}
	return &Mat{Rows: rows, Cols: cols, DType: dt, Blocks: raw}, nil
}

func q4_0ToF32Generic(dst []float32, src []byte) {
	nb := len(dst) / Q4_0Block
	src = src[:nb*Q4_0BlockBytes]
	for b := range nb {
		blk := src[b*Q4_0BlockBytes : (b+1)*Q4_0BlockBytes]
		d := f16At(blk)
		out := dst[b*Q4_0Block : (b+1)*Q4_0Block]
		for j, q := range blk[2:] {
			out[j] = d * float32(int(q&15)-8)
			out[j+16] = d * float32(int(q>>4)-8)
		}
	}
}

// q5Code returns the 5-bit code (0…31) of element i < 32 of a Q5_0 block.
func q5Code(blk []byte, i int) int {
	qh := binary.LittleEndian.Uint32(blk[2:])
	lo := blk[6+i%16]
	if i >= 16 {
		lo >>= 4
	}
	return int(lo&15) | int(qh>>i&1)<<4
}

func q5_0ToF32Generic(dst []float32, src []byte) {
	nb := len(dst) / Q4_0Block
	src = src[:nb*Q5_0BlockBytes]
	for b := range nb {
		blk := src[b*Q5_0BlockBytes : (b+1)*Q5_0BlockBytes]
		d := f16At(blk)
		for i := range Q4_0Block {
			dst[b*Q4_0Block+i] = float32(q5Code(blk, i)-16) * d
		}
	}
}

func q4kToF32Generic(dst []float32, src []byte) {
	nb := len(dst) / QKBlock
	src = src[:nb*Q4KBlockBytes]
	for b := range nb {
		blk := src[b*Q4KBlockBytes : (b+1)*Q4KBlockBytes]
		d, dmin := f16At(blk), f16At(blk[2:])
		for j := range 4 {
			q := blk[16+32*j : 16+32*j+32]
			sc1, m1 := q4kScaleMin(2*j, blk[4:16])
			sc2, m2 := q4kScaleMin(2*j+1, blk[4:16])
			d1, min1 := d*float32(sc1), dmin*float32(m1)
			d2, min2 := d*float32(sc2), dmin*float32(m2)
			y := dst[b*QKBlock+64*j:][:64]
			for l, v := range q {
				y[l] = float32(d1*float32(v&15)) - min1
				y[l+32] = float32(d2*float32(v>>4)) - min2
			}
		}
	}
}

// q6kCode returns the 6-bit code (0…63) of element i < 256 of a Q6_K block.
func q6kCode(blk []byte, i int) int {
	n, r := i/128, i%128
	l, quarter := r%32, r/32
	ql := blk[64*n:]
	qh := blk[128+32*n+l]
	var lo byte
	switch quarter {
	case 0:
		lo = ql[l] & 15
	case 1:
		lo = ql[l+32] & 15
	case 2:
		lo = ql[l] >> 4
	default:
		lo = ql[l+32] >> 4
	}
	return int(lo | (qh>>(2*quarter)&3)<<4)
}

func q6kToF32Generic(dst []float32, src []byte) {
	nb := len(dst) / QKBlock
	src = src[:nb*Q6KBlockBytes]
	for b := range nb {
		blk := src[b*Q6KBlockBytes : (b+1)*Q6KBlockBytes]
		d := f16At(blk[208:])
		y := dst[b*QKBlock:][:QKBlock]
		for i := range y {
			sc := float32(int8(blk[192+i/16]))
			y[i] = float32(d*sc) * float32(q6kCode(blk, i)-32)
		}
	}
}
