package gguf

import (
	"strings"
	"testing"
)

// TestParseOverlap: tensors whose data share bytes are refused, whichever
// comes first in the file; tensors that touch, and empty ones, are fine.
func TestParseOverlap(t *testing.T) {
	off := func(x uint64) *uint64 { return &x }
	for _, tc := range []struct {
		name    string
		tensors []testTensor
		want    string
	}{
		{"same offset", []testTensor{
			{name: "a", typ: F32, dims: []uint64{8}, data: f32Bytes(1, 2, 3, 4, 5, 6, 7, 8)},
			{name: "b", typ: F32, dims: []uint64{8}, data: f32Bytes(1, 2, 3, 4, 5, 6, 7, 8), offset: off(0)},
		}, `tensor "b": its data (bytes 0 to 32 of the data section) overlaps tensor "a"`},
		{"inside, listed first", []testTensor{
			{name: "small", typ: F32, dims: []uint64{1}, data: f32Bytes(1), offset: off(32)},
			{name: "big", typ: F32, dims: []uint64{64}, data: make([]byte, 256), offset: off(0)},
		}, `tensor "small"`},
		{"touching", []testTensor{
			{name: "a", typ: F32, dims: []uint64{8}, data: f32Bytes(1, 2, 3, 4, 5, 6, 7, 8)},
			{name: "b", typ: F32, dims: []uint64{8}, data: f32Bytes(1, 2, 3, 4, 5, 6, 7, 8)},
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := ggufSpec{kvs: []kv{{"general.architecture", "llama"}}, tensors: tc.tensors}.build()
			if len(data) < 512 {
				data = append(data, make([]byte, 512)...) // room for every offset used
			}
			_, err := Parse(data)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
