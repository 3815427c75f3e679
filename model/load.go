package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/internal/mmap"
	"github.com/kvserve/kvserve/model/safetensors"
)

// Source is where a model folder's files come from: a directory on disk
// (weights are memory-mapped) or any fs.FS (the bundled model).
type Source struct {
	Dir string // used when FS is nil
	FS  fs.FS
}

// Name describes the source for messages.
func (s Source) Name() string {
	if s.FS != nil && s.Dir == "" {
		return "bundled model"
	}
	return s.Dir
}

// ReadFile returns a small file of the folder (config, tokenizer).
func (s Source) ReadFile(name string) ([]byte, error) {
	if s.FS != nil {
		return fs.ReadFile(s.FS, name)
	}
	return os.ReadFile(filepath.Join(s.Dir, name))
}

// open returns a large file's bytes, mapped where possible, and a function
// that releases them.
func (s Source) open(name string) ([]byte, func() error, error) {
	if s.FS != nil {
		data, err := fs.ReadFile(s.FS, name)
		return data, func() error { return nil }, err
	}
	f, err := mmap.Open(filepath.Join(s.Dir, name))
	if err != nil {
		return nil, nil, err
	}
	return f.Bytes(), f.Close, nil
}

// Exists reports whether the folder has a file of that name.
func (s Source) Exists(name string) bool {
	var err error
	if s.FS != nil {
		_, err = fs.Stat(s.FS, name)
	} else {
		_, err = os.Stat(filepath.Join(s.Dir, name))
	}
	return err == nil
}

// weights is the union of a model's safetensors files.
type weights struct {
	src     Source
	tensors map[string]*safetensors.Tensor
	file    map[string]string // tensor name → file it came from
	closers []func() error
	used    map[string]bool
}

func openWeights(src Source) (*weights, error) {
	w := &weights{src: src, tensors: map[string]*safetensors.Tensor{}, file: map[string]string{}, used: map[string]bool{}}
	var files []string
	switch {
	case src.Exists("model.safetensors.index.json"):
		data, err := src.ReadFile("model.safetensors.index.json")
		if err != nil {
			return nil, err
		}
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("model.safetensors.index.json: %w", err)
		}
		seen := map[string]bool{}
		for _, f := range idx.WeightMap {
			if !seen[f] {
				if strings.Contains(f, "/") || strings.Contains(f, `\`) || f == ".." {
					return nil, fmt.Errorf("model.safetensors.index.json: shard name %q must be a plain file name", f)
				}
				seen[f] = true
				files = append(files, f)
			}
		}
		sort.Strings(files)
	case src.Exists("model.safetensors"):
		files = []string{"model.safetensors"}
	default:
		return nil, fmt.Errorf("%s: no model.safetensors or model.safetensors.index.json", src.Name())
	}
	for _, name := range files {
		data, closer, err := src.open(name)
		if err != nil {
			w.close()
			return nil, err
		}
		w.closers = append(w.closers, closer)
		f, err := safetensors.Parse(data)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for n, t := range f.Tensors {
			if prev, dup := w.file[n]; dup {
				w.close()
				return nil, fmt.Errorf("tensor %q is in both %s and %s", n, prev, name)
			}
			w.tensors[n] = t
			w.file[n] = name
		}
	}
	return w, nil
}

func (w *weights) close() error {
	var errs []error
	for _, c := range w.closers {
		errs = append(errs, c())
	}
	w.closers = nil
	return errors.Join(errs...)
}

func (w *weights) has(name string) bool { _, ok := w.tensors[name]; return ok }

// get returns a tensor checked against the expected shape.
func (w *weights) get(name string, shape ...int) (*safetensors.Tensor, error) {
	t, ok := w.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %q", w.src.Name(), name)
	}
	if !equalShape(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, want %v", w.file[name], name, t.Shape, shape)
	}
	w.used[name] = true
	return t, nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// mat returns a rows × cols weight matrix. BF16 and F32 data are used in
// place (no copy) on little-endian machines; F16 is widened to F32.
func (w *weights) mat(name string, rows, cols int) (*compute.Mat, error) {
	t, err := w.get(name, rows, cols)
	if err != nil {
		return nil, err
	}
	m := &compute.Mat{Rows: rows, Cols: cols}
	switch t.DType {
	case safetensors.BF16:
		m.DType = compute.BF16
		m.BF16 = u16s(t.Data)
	case safetensors.F32:
		m.DType = compute.F32
		m.F32 = f32s(t.Data)
	case safetensors.F16:
		m.DType = compute.F32
		m.F32 = make([]float32, rows*cols)
		for i := range m.F32 {
			m.F32[i] = compute.F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	default:
		return nil, fmt.Errorf("%s: tensor %q has dtype %s; kvserve reads BF16, F16 and F32", w.file[name], name, t.DType)
	}
	return m, nil
}

// vec returns a 1-D tensor as float32 (always a copy).
func (w *weights) vec(name string, n int) ([]float32, error) {
	t, err := w.get(name, n)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	switch t.DType {
	case safetensors.BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[2*i:])) << 16)
		}
	case safetensors.F16:
		for i := range out {
			out[i] = compute.F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case safetensors.F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	default:
		return nil, fmt.Errorf("%s: tensor %q has dtype %s; kvserve reads BF16, F16 and F32", w.file[name], name, t.DType)
	}
	return out, nil
}

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// u16s views little-endian bytes as uint16s, copying only on big-endian
// machines or when the data is misaligned.
func u16s(b []byte) []uint16 {
	n := len(b) / 2
	if n == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out
}

// f32s views little-endian bytes as float32s (see u16s).
func f32s(b []byte) []float32 {
	n := len(b) / 4
	if n == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}
