package kvcache

import (
	"fmt"
	"math"

	"github.com/kvserve/kvserve/compute"
)

// Format is how a block stores its keys and values.
type Format uint8

// Storage formats.
const (
	F32  Format = iota // 4 bytes per value: exact
	BF16               // 2 bytes per value: the top half of a float32
)

func (f Format) String() string {
	switch f {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("format(%d)", f)
}

// ParseFormat reads a format name as String writes it.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "f32":
		return F32, nil
	case "bf16":
		return BF16, nil
	}
	return 0, fmt.Errorf("unknown KV format %q (want f32 or bf16)", s)
}

// bytesPerValue returns the storage of one key or value element.
func (f Format) bytesPerValue() int {
	if f == BF16 {
		return 2
	}
	return 4
}

// rows is the key or value storage of one block: tokens × dim elements.
type rows struct {
	f32 []float32
	b16 []uint16
}

func newRows(f Format, n int) rows {
	if f == BF16 {
		return rows{b16: make([]uint16, n)}
	}
	return rows{f32: make([]float32, n)}
}

// put stores row i.
func (r *rows) put(i int, x []float32) {
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
	if r.b16 != nil {
		compute.BF16ToF32(dst, r.b16[i*d:(i+1)*d])
		return
	}
	copy(dst, r.f32[i*d:(i+1)*d])
}

// copyRow copies row i of src into row j of r.
func (r *rows) copyRow(j int, src *rows, i, d int) {
	if r.b16 != nil {
		copy(r.b16[j*d:(j+1)*d], src.b16[i*d:(i+1)*d])
		return
	}
	copy(r.f32[j*d:(j+1)*d], src.f32[i*d:(i+1)*d])
}

// scores sets dst[j] = scale · q·row(lo+j) for j < hi−lo.
func (r *rows) scores(dst, q []float32, lo, hi int, scale float32) {
	d := len(q)
	if r.b16 != nil {
		for j := lo; j < hi; j++ {
			dst[j-lo] = dotBF16(q, r.b16[j*d:(j+1)*d]) * scale
		}
		return
	}
	for j := lo; j < hi; j++ {
		dst[j-lo] = compute.Dot(q, r.f32[j*d:(j+1)*d]) * scale
	}
}

// mix adds Σ p[j−lo]·row(j) over j in [lo, hi) to out.
func (r *rows) mix(out, p []float32, lo, hi int) {
	d := len(out)
	if r.b16 != nil {
		for j := lo; j < hi; j++ {
			if w := p[j-lo]; w != 0 {
				row := r.b16[j*d : (j+1)*d]
				for c, v := range row {
					out[c] += w * math.Float32frombits(uint32(v)<<16)
				}
			}
		}
		return
	}
	for j := lo; j < hi; j++ {
		if w := p[j-lo]; w != 0 {
			compute.Axpy(out, w, r.f32[j*d:(j+1)*d])
		}
	}
}

func dotBF16(q []float32, k []uint16) float32 {
	var s float32
	for i, v := range k {
		s += q[i] * math.Float32frombits(uint32(v)<<16)
	}
	return s
}
