package gguf

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kvserve/kvserve/internal/fuzzguard"
)

// FuzzParse checks that Parse never panics, allocates no more than a small
// multiple of its input, and returns tensors that stay inside the input
// and dequantize cleanly.
func FuzzParse(f *testing.F) {
	s := validSpec()
	f.Add(s.build())
	s.kvs = allTypesKVs()
	f.Add(s.build())
	f.Add(ggufSpec{version: 2, kvs: []kv{{KeyAlignment, uint32(8)}}, tensors: []testTensor{
		{name: "k", typ: Q4_K, dims: []uint64{256}, data: make([]byte, 144)},
		{name: "s", typ: Q6_K, dims: []uint64{256, 1}, data: make([]byte, 210)},
		{name: "b", typ: BF16, dims: []uint64{2}, data: make([]byte, 4)},
	}}.build())
	f.Add(ggufSpec{kvs: []kv{{KeyTokenizerTokens, []string{"a", "b"}}, {KeyTokenizerTokenType, []int32{1, 3}}, {KeyTokenizerEOS, uint32(1)}}}.build())
	// The real header of a fixture (its tensor data cut off).
	if data, err := os.ReadFile(filepath.Join(fixtureDir, "tinychat-q8_0.gguf")); err == nil {
		if g, err := Parse(data); err == nil {
			f.Add(data[:g.DataOffset])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer fuzzguard.Start(t, len(data))()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g, err := Parse(data)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64*uint64(len(data))+1<<20 {
			t.Fatalf("Parse of %d bytes allocated %d bytes", len(data), alloc)
		}
		if err != nil {
			return
		}
		for _, tt := range g.Tensors {
			if len(tt.Data) != tt.Type.RowBytes(tt.Elements()) {
				t.Fatalf("%s: %d bytes for %d elements of %s", tt.Name, len(tt.Data), tt.Elements(), tt.Type)
			}
			if len(tt.Data) > 0 && (&tt.Data[0] == nil || cap(tt.Data) != len(tt.Data)) {
				t.Fatalf("%s: bad data slice", tt.Name)
			}
			if CanDequantize(tt.Type) && tt.Elements() <= 1<<16 {
				if err := Dequantize(tt, make([]float32, tt.Elements())); err != nil {
					t.Fatalf("%s: %v", tt.Name, err)
				}
			}
		}
		for _, k := range g.Keys {
			_ = g.Metadata[k].String()
		}
		_, _ = g.TokenizerMetadata()
	})
}
