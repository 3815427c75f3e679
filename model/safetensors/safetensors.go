// Package safetensors reads the safetensors format: an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte
// range, then the raw tensor bytes. Parse validates every range against the
// data so that later reads can never run off the end of a truncated file.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// DType is a tensor element type as safetensors spells it ("BF16", "F32", …).
type DType string

// Element types kvserve reads.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

// Size returns the bytes per element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// Tensor is one entry of a safetensors file.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	// Data holds the tensor's raw little-endian bytes, a sub-slice of the
	// file's bytes (no copy).
	Data []byte
}

// Elements returns the number of elements, the product of Shape.
func (t *Tensor) Elements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is a parsed safetensors file.
type File struct {
	// Tensors maps a tensor name to its entry.
	Tensors map[string]*Tensor
	// Metadata is the optional "__metadata__" string map.
	Metadata map[string]string
}

// Names returns the tensor names in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type headerEntry struct {
	DType       DType   `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// maxHeader bounds the JSON header; real headers are well under a megabyte.
const maxHeader = 100 << 20

// Parse reads a safetensors file held in data. The returned tensors alias
// data. Any inconsistency (short file, bad JSON, a range outside the data,
// a byte count that disagrees with dtype × shape) is an error.
func Parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length (truncated?)", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > maxHeader || n > uint64(len(data)-8) {
		return nil, fmt.Errorf("header length %d exceeds the file's %d bytes (truncated or not safetensors)", n, len(data))
	}
	header := data[8 : 8+n]
	body := data[8+n:]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("header is not valid JSON: %w", err)
	}
	f := &File{Tensors: make(map[string]*Tensor, len(raw))}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("__metadata__: %w", err)
			}
			continue
		}
		var e headerEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		t, err := e.tensor(name, body)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		f.Tensors[name] = t
	}
	return f, nil
}

func (e *headerEntry) tensor(name string, body []byte) (*Tensor, error) {
	size := e.DType.Size()
	if size == 0 {
		return nil, fmt.Errorf("unknown dtype %q", e.DType)
	}
	if len(e.DataOffsets) != 2 {
		return nil, fmt.Errorf("data_offsets has %d entries, want 2", len(e.DataOffsets))
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin < 0 || end < begin || end > int64(len(body)) {
		return nil, fmt.Errorf("data_offsets [%d, %d] outside the %d data bytes (truncated file?)", begin, end, len(body))
	}
	elems := int64(1)
	shape := make([]int, len(e.Shape))
	for i, d := range e.Shape {
		if d < 0 {
			return nil, fmt.Errorf("negative dimension in shape %v", e.Shape)
		}
		if d > 0 && elems > math.MaxInt64/d {
			return nil, fmt.Errorf("shape %v overflows", e.Shape)
		}
		elems *= d
		shape[i] = int(d)
	}
	if elems > math.MaxInt64/int64(size) || elems*int64(size) != end-begin {
		return nil, fmt.Errorf("shape %v of %s needs %d bytes, data_offsets give %d", e.Shape, e.DType, elems*int64(size), end-begin)
	}
	return &Tensor{Name: name, DType: e.DType, Shape: shape, Data: body[begin:end:end]}, nil
}
