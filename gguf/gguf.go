// Package gguf reads GGUF files, the single-file model format of ggml and
// llama.cpp, and dequantizes their tensors to float32.
//
// A GGUF file (versions 2 and 3, little-endian) is:
//
//	magic "GGUF" | version u32 | tensor count u64 | metadata count u64
//	metadata:     key (string), value type u32, value — repeated
//	tensor infos: name (string), n_dims u32, dims u64[n_dims], type u32,
//	              offset u64 (relative to the data section) — repeated
//	padding to general.alignment (default 32)
//	data section: each tensor's bytes at its offset
//
// where a string is a u64 byte length and the bytes, and an array value is
// an element type u32, a u64 count and the elements. Dims are in ggml order:
// Dims[0] is the contiguous (fastest-varying) dimension, so a PyTorch weight
// of shape [rows, cols] has Dims [cols, rows].
//
// Parse validates every count, length and offset against the data before it
// allocates or slices, so a truncated or malformed file gives an error that
// names the field or tensor, never a panic or an allocation out of
// proportion to the input.
package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
)

// Magic is the four bytes every GGUF file starts with.
const Magic = "GGUF"

// DefaultAlignment is the data alignment used when general.alignment is
// absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment.
const KeyAlignment = "general.alignment"

// KeyArchitecture is the metadata key naming the model architecture
// ("llama", "qwen2", …); model-specific keys are prefixed with its value.
const KeyArchitecture = "general.architecture"

// maxDims is ggml's GGML_MAX_DIMS.
const maxDims = 4

// maxArrayDepth bounds the nesting of arrays of arrays.
const maxArrayDepth = 4

// File is a parsed GGUF file. Its tensors' Data alias the bytes passed to
// Parse; metadata strings are copies. A File is not modified after Parse,
// so concurrent readers are safe.
type File struct {
	// Version is the GGUF format version (2 or 3).
	Version uint32
	// Metadata maps each key to its value.
	Metadata map[string]Value
	// Keys lists the metadata keys in file order.
	Keys []string
	// Tensors lists the tensors in file order.
	Tensors []*Tensor
	// Alignment is the data alignment in bytes (general.alignment or 32).
	Alignment uint64
	// DataOffset is the absolute file offset of the data section.
	DataOffset uint64

	byName map[string]*Tensor
}

// Tensor is one tensor of a GGUF file.
type Tensor struct {
	// Name is the tensor's name ("token_embd.weight", "blk.0.attn_q.weight").
	Name string
	// Type is the element type.
	Type Type
	// Dims is the shape in GGUF/ggml order: Dims[0] (ne0) is the contiguous
	// dimension, the reverse of the PyTorch shape.
	Dims []uint64
	// Offset is the byte offset of the data relative to the data section.
	Offset uint64
	// Data is the tensor's bytes, exactly Type.RowBytes(Elements()) long,
	// aliasing the file.
	Data []byte
}

// Elements returns the number of elements, the product of Dims.
func (t *Tensor) Elements() int {
	n := 1
	for _, d := range t.Dims {
		n *= int(d)
	}
	return n
}

// Shape returns the dimensions in PyTorch order (outermost first), the
// reverse of Dims: a matrix of Dims [cols, rows] has Shape [rows, cols].
func (t *Tensor) Shape() []int {
	s := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		s[len(s)-1-i] = int(d)
	}
	return s
}

// Tensor returns the tensor of that name, or nil.
func (f *File) Tensor(name string) *Tensor { return f.byName[name] }

// Value returns the metadata value of key.
func (f *File) Value(key string) (Value, bool) {
	v, ok := f.Metadata[key]
	return v, ok
}

// String returns a string metadata value.
func (f *File) String(key string) (string, bool) { return f.Metadata[key].AsString() }

// Uint returns a non-negative integer metadata value of any width.
func (f *File) Uint(key string) (uint64, bool) { return f.Metadata[key].AsUint() }

// Int returns an integer metadata value of any width.
func (f *File) Int(key string) (int64, bool) { return f.Metadata[key].AsInt() }

// Float returns a float (or integer) metadata value as float64.
func (f *File) Float(key string) (float64, bool) { return f.Metadata[key].AsFloat() }

// Bool returns a bool metadata value.
func (f *File) Bool(key string) (bool, bool) { return f.Metadata[key].AsBool() }

// Strings returns an array-of-strings metadata value (not a copy).
func (f *File) Strings(key string) ([]string, bool) { return f.Metadata[key].AsStrings() }

// Ints returns an array-of-integers metadata value as []int64.
func (f *File) Ints(key string) ([]int64, bool) { return f.Metadata[key].AsInts() }

// Floats returns an array-of-floats (or integers) metadata value as
// []float64.
func (f *File) Floats(key string) ([]float64, bool) { return f.Metadata[key].AsFloats() }

// Architecture returns general.architecture ("llama", …), or "" if absent.
func (f *File) Architecture() string {
	s, _ := f.String(KeyArchitecture)
	return s
}

// ArchKey returns the architecture-specific key for name: with
// general.architecture "llama", ArchKey("block_count") is
// "llama.block_count".
func (f *File) ArchKey(name string) string { return f.Architecture() + "." + name }

// reader walks the header with bounds checks.
type reader struct {
	data []byte
	off  uint64
}

func (r *reader) left() uint64 { return uint64(len(r.data)) - r.off }

func (r *reader) take(n uint64, what string) ([]byte, error) {
	if n > r.left() {
		return nil, fmt.Errorf("%s: needs %d bytes at offset %d but only %d remain (truncated file?)", what, n, r.off, r.left())
	}
	b := r.data[r.off : r.off+n]
	r.off += n
	return b, nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (r *reader) str(what string) (string, error) {
	start := r.off
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > r.left() {
		return "", fmt.Errorf("%s: length %d at offset %d exceeds the %d bytes left (truncated or corrupt file?)", what, n, start, r.left())
	}
	b, _ := r.take(n, what)
	return string(b), nil
}

// count reads an element count and checks that n elements of at least
// minSize bytes each fit in the rest of the data.
func (r *reader) count(what string, minSize uint64) (uint64, error) {
	start := r.off
	n, err := r.u64(what)
	if err != nil {
		return 0, err
	}
	if minSize > 0 && n > r.left()/minSize {
		return 0, fmt.Errorf("%s %d at offset %d is impossible: %d elements need at least %d bytes each but only %d bytes remain", what, n, start, n, minSize, r.left())
	}
	return n, nil
}

// Parse parses a GGUF file held in data (read into memory or
// memory-mapped). Tensor data alias data, so data must stay valid and
// unmodified while the File's tensors are used.
func Parse(data []byte) (*File, error) {
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return f, nil
}

func parse(data []byte) (*File, error) {
	r := &reader{data: data}
	magic, err := r.take(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("bad magic %q, want %q (not a GGUF file)", magic, Magic)
	}
	version, err := r.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return nil, fmt.Errorf("version 1 is not supported (only 2 and 3)")
	case bits.ReverseBytes32(version) == 2 || bits.ReverseBytes32(version) == 3:
		return nil, fmt.Errorf("big-endian GGUF (version %d byte-swapped) is not supported", bits.ReverseBytes32(version))
	default:
		return nil, fmt.Errorf("unsupported version %d (only 2 and 3)", version)
	}
	f := &File{Version: version, Alignment: DefaultAlignment}

	// A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type)
	// + 8 (offset) bytes; a metadata pair at least 8 (key length) + 4
	// (type) + 1 (value).
	nTensors, err := r.count("tensor count", 24)
	if err != nil {
		return nil, err
	}
	nKV, err := r.count("metadata count", 13)
	if err != nil {
		return nil, err
	}

	f.Metadata = make(map[string]Value, nKV)
	f.Keys = make([]string, 0, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := r.str(fmt.Sprintf("metadata pair %d key", i))
		if err != nil {
			return nil, err
		}
		what := fmt.Sprintf("metadata %q", key)
		if _, dup := f.Metadata[key]; dup {
			return nil, fmt.Errorf("%s: duplicate key", what)
		}
		t, err := r.u32(what + " type")
		if err != nil {
			return nil, err
		}
		v, err := r.value(ValueType(t), what, 0)
		if err != nil {
			return nil, err
		}
		f.Metadata[key] = v
		f.Keys = append(f.Keys, key)
	}
	if v, ok := f.Metadata[KeyAlignment]; ok {
		a, ok := v.AsUint()
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<30 {
			return nil, fmt.Errorf("metadata %q: %v is not a power of two in [1, 2^30]", KeyAlignment, v)
		}
		f.Alignment = a
	}

	f.Tensors = make([]*Tensor, 0, nTensors)
	f.byName = make(map[string]*Tensor, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := r.tensorInfo(i)
		if err != nil {
			return nil, err
		}
		if _, dup := f.byName[t.Name]; dup {
			return nil, fmt.Errorf("tensor %q: duplicate name", t.Name)
		}
		f.Tensors = append(f.Tensors, t)
		f.byName[t.Name] = t
	}

	// The data section starts at the next multiple of the alignment. A file
	// without tensor data may end before that.
	f.DataOffset = (r.off + f.Alignment - 1) / f.Alignment * f.Alignment
	for _, t := range f.Tensors {
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		size := uint64(t.Type.RowBytes(t.Elements()))
		start, carry := bits.Add64(f.DataOffset, t.Offset, 0)
		if carry != 0 || start > uint64(len(data)) {
			return nil, fmt.Errorf("tensor %q: offset %d (+ data section start %d) is past the file's %d bytes (truncated or corrupt file?)", t.Name, t.Offset, f.DataOffset, len(data))
		}
		if size > uint64(len(data))-start {
			return nil, fmt.Errorf("tensor %q: data needs %d bytes (%d elements of %s) at file offset %d but only %d remain (truncated file?)",
				t.Name, size, t.Elements(), t.Type, start, uint64(len(data))-start)
		}
		t.Data = data[start : start+size : start+size]
	}
	if err := checkOverlap(f); err != nil {
		return nil, err
	}
	return f, nil
}

func (r *reader) tensorInfo(i uint64) (*Tensor, error) {
	name, err := r.str(fmt.Sprintf("tensor %d name", i))
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("tensor %q", name)
	nDims, err := r.u32(what + " n_dims")
	if err != nil {
		return nil, err
	}
	if nDims > maxDims {
		return nil, fmt.Errorf("%s: %d dimensions, at most %d allowed", what, nDims, maxDims)
	}
	t := &Tensor{Name: name, Dims: make([]uint64, nDims)}
	elems := uint64(1)
	for j := range t.Dims {
		d, err := r.u64("value")
		if err != nil {
			return nil, fmt.Errorf("%s dim %d: %w", what, j, err)
		}
		t.Dims[j] = d
		hi, lo := bits.Mul64(elems, d)
		if hi != 0 || lo > math.MaxInt64 {
			return nil, fmt.Errorf("%s: dims %v overflow the element count", what, t.Dims[:j+1])
		}
		elems = lo
	}
	typ, err := r.u32(what + " type")
	if err != nil {
		return nil, err
	}
	t.Type = Type(typ)
	if !t.Type.Known() {
		return nil, fmt.Errorf("%s: unknown ggml type %d", what, typ)
	}
	bs := uint64(t.Type.BlockSize())
	if len(t.Dims) > 0 && t.Dims[0]%bs != 0 || elems%bs != 0 {
		return nil, fmt.Errorf("%s: dims %v do not fit %s: the first dimension must be a multiple of its block size %d", what, t.Dims, t.Type, bs)
	}
	// The byte size must be representable; Parse later checks it against
	// the file.
	if hi, lo := bits.Mul64(elems/bs, uint64(t.Type.TypeSize())); hi != 0 || lo > math.MaxInt64 {
		return nil, fmt.Errorf("%s: dims %v are too large", what, t.Dims)
	}
	if elems > math.MaxInt {
		return nil, fmt.Errorf("%s: dims %v are too large", what, t.Dims)
	}
	if t.Offset, err = r.u64(what + " offset"); err != nil {
		return nil, err
	}
	return t, nil
}

// value reads a value of type t. depth counts enclosing arrays.
func (r *reader) value(t ValueType, what string, depth int) (Value, error) {
	b := func(n uint64) []byte { x, _ := r.take(n, what); return x }
	if size := t.fixedSize(); size > 0 && uint64(size) > r.left() {
		return Value{}, fmt.Errorf("%s: %s value needs %d bytes at offset %d but only %d remain (truncated file?)", what, t, size, r.off, r.left())
	}
	le := binary.LittleEndian
	v := Value{Type: t}
	switch t {
	case TypeUint8:
		v.v = b(1)[0]
	case TypeInt8:
		v.v = int8(b(1)[0])
	case TypeBool:
		v.v = b(1)[0] != 0
	case TypeUint16:
		v.v = le.Uint16(b(2))
	case TypeInt16:
		v.v = int16(le.Uint16(b(2)))
	case TypeUint32:
		v.v = le.Uint32(b(4))
	case TypeInt32:
		v.v = int32(le.Uint32(b(4)))
	case TypeFloat32:
		v.v = math.Float32frombits(le.Uint32(b(4)))
	case TypeUint64:
		v.v = le.Uint64(b(8))
	case TypeInt64:
		v.v = int64(le.Uint64(b(8)))
	case TypeFloat64:
		v.v = math.Float64frombits(le.Uint64(b(8)))
	case TypeString:
		s, err := r.str(what)
		if err != nil {
			return Value{}, err
		}
		v.v = s
	case TypeArray:
		if depth >= maxArrayDepth {
			return Value{}, fmt.Errorf("%s: arrays nested deeper than %d", what, maxArrayDepth)
		}
		et, err := r.u32(what + " array element type")
		if err != nil {
			return Value{}, err
		}
		v.ElemType = ValueType(et)
		if v.v, err = r.array(v.ElemType, what, depth); err != nil {
			return Value{}, err
		}
	default:
		return Value{}, fmt.Errorf("%s: unknown value type %d", what, uint32(t))
	}
	return v, nil
}

func (r *reader) array(et ValueType, what string, depth int) (any, error) {
	var minSize uint64
	switch size := et.fixedSize(); {
	case size > 0:
		minSize = uint64(size)
	case et == TypeString:
		minSize = 8 // the length
	case et == TypeArray:
		minSize = 12 // element type and count
	default:
		return nil, fmt.Errorf("%s: unknown array element type %d", what, uint32(et))
	}
	n, err := r.count(what+" array length", minSize)
	if err != nil {
		return nil, err
	}
	if et.fixedSize() > 0 {
		raw, _ := r.take(n*minSize, what)
		return decodeFixed(et, raw, int(n)), nil
	}
	if et == TypeString {
		s := make([]string, n)
		for i := range s {
			if s[i], err = r.str("string"); err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", what, i, err)
			}
		}
		return s, nil
	}
	vs := make([]Value, n)
	for i := range vs {
		if vs[i], err = r.value(TypeArray, "array", depth+1); err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", what, i, err)
		}
	}
	return vs, nil
}

// decodeFixed decodes n little-endian scalars of type et from raw.
func decodeFixed(et ValueType, raw []byte, n int) any {
	le := binary.LittleEndian
	switch et {
	case TypeUint8:
		return append([]uint8(nil), raw...)
	case TypeInt8:
		return fill(n, func(i int) int8 { return int8(raw[i]) })
	case TypeBool:
		return fill(n, func(i int) bool { return raw[i] != 0 })
	case TypeUint16:
		return fill(n, func(i int) uint16 { return le.Uint16(raw[2*i:]) })
	case TypeInt16:
		return fill(n, func(i int) int16 { return int16(le.Uint16(raw[2*i:])) })
	case TypeUint32:
		return fill(n, func(i int) uint32 { return le.Uint32(raw[4*i:]) })
	case TypeInt32:
		return fill(n, func(i int) int32 { return int32(le.Uint32(raw[4*i:])) })
	case TypeFloat32:
		return fill(n, func(i int) float32 { return math.Float32frombits(le.Uint32(raw[4*i:])) })
	case TypeUint64:
		return fill(n, func(i int) uint64 { return le.Uint64(raw[8*i:]) })
	case TypeInt64:
		return fill(n, func(i int) int64 { return int64(le.Uint64(raw[8*i:])) })
	case TypeFloat64:
		return fill(n, func(i int) float64 { return math.Float64frombits(le.Uint64(raw[8*i:])) })
	}
	return nil
}

func fill[T any](n int, f func(int) T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = f(i)
	}
	return s
}
