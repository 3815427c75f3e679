package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// A tiny GGUF writer for tests, written from the format description in the
// package doc.

// kv is one metadata pair. val's Go type picks the GGUF type: uint8 …
// int64, float32, float64, bool, string, slices of those, or arr for an
// array of arrays.
type kv struct {
	key string
	val any
}

// arr is an array whose elements are themselves arrays (or any values of
// one type elem, written with writeValue).
type arr struct {
	elem  ValueType
	items []any
}

// rawValue writes a value with an arbitrary type tag and payload, for
// malformed files.
type rawValue struct {
	typ     uint32
	payload []byte
}

type testTensor struct {
	name   string
	typ    Type
	dims   []uint64
	data   []byte
	offset *uint64 // overrides the computed offset
}

type ggufSpec struct {
	version   uint32
	alignment uint64 // 0: default 32 (general.alignment must be in kvs otherwise)
	kvs       []kv
	tensors   []testTensor
}

type wbuf struct{ bytes.Buffer }

func (w *wbuf) u32(x uint32) { _ = binary.Write(w, binary.LittleEndian, x) }
func (w *wbuf) u64(x uint64) { _ = binary.Write(w, binary.LittleEndian, x) }
func (w *wbuf) str(s string) { w.u64(uint64(len(s))); w.WriteString(s) }

func valueTypeOf(v any) ValueType {
	switch v.(type) {
	case uint8, []uint8:
		return TypeUint8
	case int8, []int8:
		return TypeInt8
	case uint16, []uint16:
		return TypeUint16
	case int16, []int16:
		return TypeInt16
	case uint32, []uint32:
		return TypeUint32
	case int32, []int32:
		return TypeInt32
	case float32, []float32:
		return TypeFloat32
	case bool, []bool:
		return TypeBool
	case string, []string:
		return TypeString
	case uint64, []uint64:
		return TypeUint64
	case int64, []int64:
		return TypeInt64
	case float64, []float64:
		return TypeFloat64
	}
	panic(fmt.Sprintf("no GGUF type for %T", v))
}

func isSlice(v any) bool {
	switch v.(type) {
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64:
		return true
	}
	return false
}

// writeTyped writes a value with its type tag.
func (w *wbuf) writeTyped(v any) {
	switch x := v.(type) {
	case rawValue:
		w.u32(x.typ)
		w.Write(x.payload)
	case arr:
		w.u32(uint32(TypeArray))
		w.u32(uint32(x.elem))
		w.u64(uint64(len(x.items)))
		for _, it := range x.items {
			if x.elem == TypeArray {
				w.writeArrayBody(it)
			} else {
				w.writeScalar(it)
			}
		}
	default:
		if isSlice(v) {
			w.u32(uint32(TypeArray))
			w.writeArrayBody(v)
			return
		}
		w.u32(uint32(valueTypeOf(v)))
		w.writeScalar(v)
	}
}

// writeArrayBody writes element type, count and elements (no TypeArray
// tag): how an array appears inside another array.
func (w *wbuf) writeArrayBody(v any) {
	if a, ok := v.(arr); ok {
		w.u32(uint32(a.elem))
		w.u64(uint64(len(a.items)))
		for _, it := range a.items {
			if a.elem == TypeArray {
				w.writeArrayBody(it)
			} else {
				w.writeScalar(it)
			}
		}
		return
	}
	w.u32(uint32(valueTypeOf(v)))
	switch s := v.(type) {
	case []string:
		w.u64(uint64(len(s)))
		for _, x := range s {
			w.str(x)
		}
	case []bool:
		w.u64(uint64(len(s)))
		for _, x := range s {
			w.writeScalar(x)
		}
	default:
		// Fixed-size numbers: binary.Write encodes the slice little-endian.
		n := binary.Size(v) / valueTypeOf(v).fixedSize()
		w.u64(uint64(n))
		_ = binary.Write(w, binary.LittleEndian, v)
	}
}

func (w *wbuf) writeScalar(v any) {
	switch x := v.(type) {
	case string:
		w.str(x)
	case bool:
		if x {
			w.WriteByte(1)
		} else {
			w.WriteByte(0)
		}
	case float32:
		w.u32(math.Float32bits(x))
	case float64:
		w.u64(math.Float64bits(x))
	default:
		_ = binary.Write(w, binary.LittleEndian, v)
	}
}

// build encodes the spec. Tensor data are laid out in order, each at the
// next aligned offset; the file ends right after the last tensor's data. A
// tensor with an offset override gets that offset in its info and its data
// written wherever the writer stands.
func (s ggufSpec) build() []byte {
	align := s.alignment
	if align == 0 {
		align = DefaultAlignment
	}
	version := s.version
	if version == 0 {
		version = 3
	}
	var w wbuf
	w.WriteString(Magic)
	w.u32(version)
	w.u64(uint64(len(s.tensors)))
	w.u64(uint64(len(s.kvs)))
	for _, p := range s.kvs {
		w.str(p.key)
		w.writeTyped(p.val)
	}
	var off uint64
	offsets := make([]uint64, len(s.tensors))
	for i, t := range s.tensors {
		offsets[i] = off
		if t.offset != nil {
			offsets[i] = *t.offset
		}
		off = (off + uint64(len(t.data)) + align - 1) / align * align
		w.str(t.name)
		w.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			w.u64(d)
		}
		w.u32(uint32(t.typ))
		w.u64(offsets[i])
	}
	for uint64(w.Len())%align != 0 && len(s.tensors) > 0 {
		w.WriteByte(0)
	}
	start := uint64(w.Len())
	for i, t := range s.tensors {
		for t.offset == nil && uint64(w.Len()) < start+offsets[i] {
			w.WriteByte(0)
		}
		w.Write(t.data)
	}
	return w.Bytes()
}
