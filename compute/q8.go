package compute

import "fmt"

// Q8_0 layout, as ggml stores it: each block of Q8Block consecutive
// elements of a row is a little-endian IEEE half scale followed by Q8Block
// signed bytes, and element i of the block is scale·int8(q[i]).
const (
	Q8Block      = 32 // elements per Q8_0 block
	Q8BlockBytes = 34 // bytes per Q8_0 block
)

// NewQ8_0 returns a rows × cols Q8_0 matrix over raw, the ggml blocks of
// its rows in order. cols must be a multiple of 32 and raw exactly
// rows·cols/32·34 bytes long. The matrix keeps raw, without copying.
func NewQ8_0(rows, cols int, raw []byte) (*Mat, error) {
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("compute: Q8_0 matrix of %d × %d", rows, cols)
	}
	if cols%Q8Block != 0 {
		return nil, fmt.Errorf("compute: Q8_0 matrix of %d columns: not a multiple of %d", cols, Q8Block)
	}
	if want := rows * (cols / Q8Block) * Q8BlockBytes; len(raw) != want {
		return nil, fmt.Errorf("compute: Q8_0 matrix of %d × %d needs %d bytes, got %d", rows, cols, want, len(raw))
	}
	return &Mat{Rows: rows, Cols: cols, DType: Q8_0, Q8: raw}, nil
}

// q8RowBytes returns the bytes of one Q8_0 row of cols elements.
func q8RowBytes(cols int) int { return cols / Q8Block * Q8BlockBytes }

// q8Scale returns the scale of the Q8_0 block starting at b[0].
func q8Scale(b []byte) float32 { return F16ToF32(uint16(b[0]) | uint16(b[1])<<8) }

func q8ToF32Generic(dst []float32, src []byte) {
	nb := len(dst) / Q8Block
	src = src[:nb*Q8BlockBytes]
	for b := range nb {
		blk := src[b*Q8BlockBytes : (b+1)*Q8BlockBytes]
		s := q8Scale(blk)
		out := dst[b*Q8Block : (b+1)*Q8Block]
		for i, q := range blk[2:] {
			out[i] = s * float32(int8(q))
		}
	}
}

func dotQ8Generic(d []float32, w []byte, x []float32, k int) {
	rb := q8RowBytes(k)
	w, x = w[:len(d)*rb], x[:k]
	for r := range d {
		row := w[r*rb : (r+1)*rb]
		var sum float32
		for b := 0; b < len(row); b += Q8BlockBytes {
			blk := row[b : b+Q8BlockBytes][2:]
			xb := x[b/Q8BlockBytes*Q8Block:][:Q8Block]
			var s0, s1, s2, s3 float32
			for i := 0; i < Q8Block; i += 4 {
				s0 += float32(int8(blk[i])) * xb[i]
				s1 += float32(int8(blk[i+1])) * xb[i+1]
				s2 += float32(int8(blk[i+2])) * xb[i+2]
				s3 += float32(int8(blk[i+3])) * xb[i+3]
			}
			sum += q8Scale(row[b:]) * ((s0 + s1) + (s2 + s3))
		}
		d[r] = sum
	}
}
