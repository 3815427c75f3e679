package safetensors

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/internal/fuzzguard"
)

// build makes a safetensors file from a header JSON and a body.
func build(header string, body []byte) []byte {
	out := make([]byte, 8, 8+len(header)+len(body))
	binary.LittleEndian.PutUint64(out, uint64(len(header)))
	out = append(out, header...)
	return append(out, body...)
}

func TestParse(t *testing.T) {
	good := build(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}`, make([]byte, 16))
	f, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Names(); strings.Join(got, ",") != "a,b" {
		t.Fatalf("names %v", got)
	}
	if a := f.Tensors["a"]; a.Elements() != 6 || len(a.Data) != 12 || a.DType != BF16 {
		t.Fatalf("tensor a: %+v", a)
	}
	if f.Metadata["format"] != "pt" {
		t.Fatalf("metadata %v", f.Metadata)
	}

	bad := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "too short", nil},
		{"header past end", "exceeds", build(`{}`, nil)[:9]},
		{"not json", "not valid JSON", build(`{"a":`, nil)},
		{"unknown dtype", "unknown dtype", build(`{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1))},
		{"truncated data", "outside", build(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 8))},
		{"shape mismatch", "needs 8 bytes", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"negative dim", "negative", build(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{"bad offsets", "data_offsets has", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, make([]byte, 4))},
		{"reversed offsets", "outside", build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4))},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(build(`{"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}}`, make([]byte, 12)))
	f.Add(build(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}`, make([]byte, 16)))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer fuzzguard.Start(t, len(data))()
		file, err := Parse(data)
		if err != nil {
			return
		}
		for _, tn := range file.Tensors {
			if len(tn.Data) != tn.Elements()*tn.DType.Size() {
				t.Fatalf("tensor %q: %d bytes for %d elements", tn.Name, len(tn.Data), tn.Elements())
			}
		}
	})
}
