package kvcache

import (
	"fmt"

	"github.com/kvserve/kvserve/compute"
)

// Format is how a block stores its keys and values.
//
// F32 and BF16 are a pool's formats: every block starts in one of them.
// Int2, Int3, Int4 and Int8 are the formats of sealed blocks that
// Seq.Quantize converts in KIVI's layout (Liu et al., "KIVI: A Tuning-Free
// Asymmetric 2bit Quantization for KV Cache", ICML 2024, arXiv:2402.02750):
// keys per channel over the block's tokens, values per token over groups of
// 32 channels, asymmetric min/max codes with one float16 scale and one
// float16 zero per group.
type Format uint8

// Storage formats.
const (
	F32  Format = iota // 4 bytes per value: exact
	BF16               // 2 bytes per value: the top half of a float32
	Int2               // KIVI 2-bit codes + float16 scale and zero per group
	Int3               // KIVI 3-bit codes + float16 scale and zero per group
	Int4               // KIVI 4-bit codes + float16 scale and zero per group
	Int8               // KIVI 8-bit codes + float16 scale and zero per group
)

func (f Format) String() string {
	switch f {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case Int2, Int3, Int4, Int8:
		return fmt.Sprintf("int%d", f.Bits())
	}
	return fmt.Sprintf("format(%d)", f)
}

// ParseFormat reads a pool format name as String writes it: f32 or bf16.
// The quantized formats are not pool formats: Seq.Quantize converts
// sealed blocks into them (the kivi presses do so).
func ParseFormat(s string) (Format, error) {
	switch s {
	case "f32":
		return F32, nil
	case "bf16":
		return BF16, nil
	}
	if f, err := ParseQuantFormat(s); err == nil {
		return 0, fmt.Errorf("KV format %q is a quantized block format, not a pool format: keep f32 or bf16 and quantize with a kivi press (KIVI, arXiv:2402.02750)", f)
	}
	return 0, fmt.Errorf("unknown KV format %q (want f32 or bf16)", s)
}

// ParseQuantFormat reads a quantized format name: int2, int3, int4 or
// int8 (KIVI's codes, arXiv:2402.02750).
func ParseQuantFormat(s string) (Format, error) {
	for _, f := range []Format{Int2, Int3, Int4, Int8} {
		if s == f.String() {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown quantized KV format %q (want int2, int3, int4 or int8)", s)
}

// Bits returns the bits one stored element takes, scales and zeros of the
// quantized formats not counted.
func (f Format) Bits() int {
	switch f {
	case F32:
		return 32
	case BF16:
		return 16
	case Int2:
		return 2
	case Int3:
		return 3
	case Int4:
		return 4
	case Int8:
		return 8
	}
	return 0
}

// Quantized reports whether f is one of KIVI's integer block formats
// (arXiv:2402.02750) rather than a pool format.
func (f Format) Quantized() bool { return f >= Int2 && f <= Int8 }

// bytesPerValue returns the storage of one key or value element of a pool
// format.
func (f Format) bytesPerValue() int {
	if f == BF16 {
		return 2
	}
	return 4
}

// rows is the key or value storage of one block: tokens × dim elements,
// in full precision (f32 or b16) or, once the block is sealed and
// quantized, as KIVI codes (q; see quant.go). Exactly one is set.
type rows struct {
	f32 []float32
	b16 []uint16
	q   *qrows
	x   rowStore // ThinK's pruned keys, GEAR's corrected codes (rowstore.go)
}

func newRows(f Format, n int) rows {
	if f == BF16 {
		return rows{b16: make([]uint16, n)}
	}
	return rows{f32: make([]float32, n)}
}

// format returns how r stores its elements.
func (r *rows) format() Format {
	switch {
	case r.q != nil:
		return r.q.f
	case r.x != nil:
		return r.x.format()
	case r.b16 != nil:
		return BF16
	}
	return F32
}

// bytes returns the bytes r's arrays hold.
func (r *rows) bytes() int64 {
	if r.q != nil {
		return r.q.bytes()
	}
	if r.x != nil {
		return r.x.bytes()
	}
	return int64(len(r.f32))*4 + int64(len(r.b16))*2
}

// put stores row i. Writing into quantized rows first widens them back to
// full precision (a block truncated into, or one reused from the pool's
// free list).
func (r *rows) put(i int, x []float32) {
	if r.q != nil {
		r.unseal()
	}
	if r.x != nil {
		r.widenStore()
	}
	d := len(x)
	if r.b16 != nil {
		compute.F32ToBF16(r.b16[i*d:(i+1)*d], x)
		return
	}
	copy(r.f32[i*d:(i+1)*d], x)
}

// get widens row i into dst.
func (r *rows) get(i int, dst []float32) {
	d := len(dst)
	switch {
	case r.q != nil:
		r.q.row(i, dst)
	case r.x != nil:
		r.x.get(i, dst)
	case r.b16 != nil:
		compute.BF16ToF32(dst, r.b16[i*d:(i+1)*d])
	default:
		copy(dst, r.f32[i*d:(i+1)*d])
	}
}

// copyRow copies row i of src into row j of r; a quantized source is
// dequantized into r's full precision.
func (r *rows) copyRow(j int, src *rows, i, d int) {
	if r.q != nil {
		r.unseal()
	}
	if r.x != nil {
		r.widenStore()
	}
	switch {
	case src.q != nil:
		if r.f32 != nil {
			src.q.row(i, r.f32[j*d:(j+1)*d])
			return
		}
		var buf [stackDim]float32
		tmp := scratch(buf[:], d)
		src.q.row(i, tmp)
		compute.F32ToBF16(r.b16[j*d:(j+1)*d], tmp)
	case r.b16 != nil && src.b16 != nil:
		copy(r.b16[j*d:(j+1)*d], src.b16[i*d:(i+1)*d])
	case r.f32 != nil && src.f32 != nil:
		copy(r.f32[j*d:(j+1)*d], src.f32[i*d:(i+1)*d])
	default: // formats differ: widen, then store
		var buf [stackDim]float32
		tmp := scratch(buf[:], d)
		src.get(i, tmp)
		r.put(j, tmp)
	}
}

// scores sets dst[j] = scale · q·row(lo+j) for j < hi−lo.
func (r *rows) scores(dst, q []float32, lo, hi int, scale float32) {
	d := len(q)
	switch {
	case r.q != nil:
		r.q.scores(dst, q, lo, hi, scale)
	case r.x != nil:
		r.x.scores(dst, q, lo, hi, scale)
	case r.b16 != nil:
		compute.ScoresBF16(dst, q, r.b16[lo*d:hi*d], hi-lo, scale)
	default:
		compute.Scores(dst, q, r.f32[lo*d:hi*d], hi-lo, scale)
	}
}

// mix adds Σ p[j−lo]·row(j) over j in [lo, hi) to out.
func (r *rows) mix(out, p []float32, lo, hi int) {
	d := len(out)
	switch {
	case r.q != nil:
		r.q.mix(out, p, lo, hi)
	case r.x != nil:
		r.x.mix(out, p, lo, hi)
	case r.b16 != nil:
		compute.MixRowsBF16(out, p, r.b16[lo*d:hi*d], hi-lo)
	default:
		compute.MixRows(out, p, r.f32[lo*d:hi*d], hi-lo)
	}
}
