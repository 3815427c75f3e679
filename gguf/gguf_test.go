package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// allTypesKVs has one metadata pair of every value type, arrays included.
func allTypesKVs() []kv {
	return []kv{
		{"general.architecture", "llama"},
		{"u8", uint8(200)},
		{"i8", int8(-100)},
		{"u16", uint16(60000)},
		{"i16", int16(-30000)},
		{"u32", uint32(4000000000)},
		{"i32", int32(-2000000000)},
		{"f32", float32(1.5)},
		{"bool", true},
		{"str", "héllo\x00world"},
		{"u64", uint64(math.MaxUint64)},
		{"i64", int64(math.MinInt64)},
		{"f64", float64(-2.25)},
		{"empty", ""},
		{"a.u8", []uint8{1, 2, 255}},
		{"a.i8", []int8{-1, 0, 1}},
		{"a.u16", []uint16{1, 65535}},
		{"a.i16", []int16{-32768, 7}},
		{"a.u32", []uint32{0, 4294967295}},
		{"a.i32", []int32{3, 3, 1, -5}},
		{"a.u64", []uint64{1, 1 << 62}},
		{"a.u64big", []uint64{math.MaxUint64}},
		{"a.i64", []int64{math.MaxInt64, -1}},
		{"a.f32", []float32{0.5, -1, float32(math.Inf(1))}},
		{"a.f64", []float64{math.Pi}},
		{"a.bool", []bool{true, false, true}},
		{"a.str", []string{"a", "", "<|im_start|>"}},
		{"a.empty", []string{}},
		{"a.nested", arr{TypeArray, []any{[]int32{1, 2}, []string{"x"}, arr{TypeArray, []any{[]uint8{9}}}}}},
	}
}

func f32Bytes(xs ...float32) []byte {
	b := make([]byte, 4*len(xs))
	for i, x := range xs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func TestParseSynthetic(t *testing.T) {
	q8 := make([]byte, 2*34) // two Q8_0 blocks
	for i := range q8 {
		q8[i] = byte(i)
	}
	for _, tc := range []struct {
		name      string
		version   uint32
		alignment uint64
	}{
		{"v3 default alignment", 3, 0},
		{"v2 default alignment", 2, 0},
		{"v3 alignment 64", 3, 64},
		{"v3 alignment 1", 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kvs := allTypesKVs()
			if tc.alignment != 0 {
				kvs = append(kvs, kv{KeyAlignment, uint32(tc.alignment)})
			}
			spec := ggufSpec{version: tc.version, alignment: tc.alignment, kvs: kvs, tensors: []testTensor{
				{name: "a", typ: F32, dims: []uint64{3, 1}, data: f32Bytes(1, 2, 3)},
				{name: "b", typ: Q8_0, dims: []uint64{32, 2}, data: q8},
				{name: "empty", typ: F16, dims: []uint64{0, 5}, data: nil},
				{name: "scalar", typ: F32, dims: nil, data: f32Bytes(7)},
			}}
			data := spec.build()
			f, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			wantAlign := tc.alignment
			if wantAlign == 0 {
				wantAlign = 32
			}
			if f.Version != tc.version || f.Alignment != wantAlign || f.DataOffset%wantAlign != 0 {
				t.Fatalf("version %d alignment %d data offset %d", f.Version, f.Alignment, f.DataOffset)
			}
			var keys []string
			for _, p := range kvs {
				keys = append(keys, p.key)
			}
			if !reflect.DeepEqual(f.Keys, keys) || len(f.Metadata) != len(keys) {
				t.Fatalf("keys %v, want %v", f.Keys, keys)
			}
			// Every scalar and flat array comes back as the same Go value.
			for _, p := range kvs {
				v := f.Metadata[p.key]
				if _, nested := p.val.(arr); nested {
					continue
				}
				if !reflect.DeepEqual(v.Any(), p.val) && !(p.key == "a.empty" && v.Len() == 0) {
					t.Errorf("%s = %#v (%s), want %#v", p.key, v.Any(), v.Type, p.val)
				}
			}
			nested := f.Metadata["a.nested"]
			if nested.Type != TypeArray || nested.ElemType != TypeArray || nested.Len() != 3 {
				t.Fatalf("nested = %v", nested)
			}
			inner := nested.Any().([]Value)
			if got, _ := inner[0].AsInts(); !reflect.DeepEqual(got, []int64{1, 2}) {
				t.Errorf("nested[0] = %v", inner[0])
			}
			if got, _ := inner[1].AsStrings(); !reflect.DeepEqual(got, []string{"x"}) {
				t.Errorf("nested[1] = %v", inner[1])
			}
			if inner[2].ElemType != TypeArray || inner[2].Any().([]Value)[0].Any().([]uint8)[0] != 9 {
				t.Errorf("nested[2] = %v", inner[2])
			}

			if len(f.Tensors) != 4 {
				t.Fatalf("%d tensors", len(f.Tensors))
			}
			for i, want := range spec.tensors {
				got := f.Tensors[i]
				if got.Name != want.name || got.Type != want.typ || !bytes.Equal(got.Data, want.data) || len(got.Data) != len(want.data) {
					t.Errorf("tensor %d = %s %s %v %d bytes, want %s", i, got.Name, got.Type, got.Dims, len(got.Data), want.name)
				}
				if len(got.Dims) != len(want.dims) || (len(want.dims) > 0 && !reflect.DeepEqual(got.Dims, want.dims)) {
					t.Errorf("tensor %s dims %v, want %v", got.Name, got.Dims, want.dims)
				}
				if f.Tensor(want.name) != got {
					t.Errorf("Tensor(%q) lookup failed", want.name)
				}
				if got.Offset%wantAlign != 0 {
					t.Errorf("tensor %s offset %d not aligned", got.Name, got.Offset)
				}
				// Data aliases the input.
				if len(got.Data) > 0 {
					p := uintptr(unsafe.Pointer(&got.Data[0])) - uintptr(unsafe.Pointer(&data[0]))
					if p != uintptr(f.DataOffset+got.Offset) {
						t.Errorf("tensor %s data at %d, want %d", got.Name, p, f.DataOffset+got.Offset)
					}
				}
			}
			if f.Tensor("missing") != nil {
				t.Error("Tensor(missing) != nil")
			}
			b := f.Tensor("b")
			if b.Elements() != 64 || !reflect.DeepEqual(b.Shape(), []int{2, 32}) {
				t.Errorf("b: %d elements, shape %v", b.Elements(), b.Shape())
			}
			if s := f.Tensor("scalar"); s.Elements() != 1 || len(s.Shape()) != 0 {
				t.Errorf("scalar: %d elements, shape %v", s.Elements(), s.Shape())
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	f, err := Parse(ggufSpec{kvs: allTypesKVs()}.build())
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture() != "llama" || f.ArchKey("block_count") != "llama.block_count" {
		t.Errorf("architecture %q, key %q", f.Architecture(), f.ArchKey("block_count"))
	}
	type result struct {
		v  any
		ok bool
	}
	r := func(v any, ok bool) result { return result{v, ok} }
	for _, tc := range []struct {
		name string
		got  result
		want result
	}{
		{"Uint u8", r(f.Uint("u8")), result{uint64(200), true}},
		{"Uint u32", r(f.Uint("u32")), result{uint64(4000000000), true}},
		{"Uint u64", r(f.Uint("u64")), result{uint64(math.MaxUint64), true}},
		{"Uint negative", r(f.Uint("i8")), result{uint64(0), false}},
		{"Uint string", r(f.Uint("str")), result{uint64(0), false}},
		{"Uint missing", r(f.Uint("nope")), result{uint64(0), false}},
		{"Int i32", r(f.Int("i32")), result{int64(-2000000000), true}},
		{"Int i64", r(f.Int("i64")), result{int64(math.MinInt64), true}},
		{"Int u16", r(f.Int("u16")), result{int64(60000), true}},
		{"Int u64 too big", r(f.Int("u64")), result{int64(0), false}},
		{"Int float", r(f.Int("f32")), result{int64(0), false}},
		{"Float f32", r(f.Float("f32")), result{1.5, true}},
		{"Float f64", r(f.Float("f64")), result{-2.25, true}},
		{"Float int", r(f.Float("i16")), result{-30000.0, true}},
		{"Float string", r(f.Float("str")), result{0.0, false}},
		{"Bool", r(f.Bool("bool")), result{true, true}},
		{"Bool int", r(f.Bool("u8")), result{false, false}},
		{"String", r(f.String("str")), result{"héllo\x00world", true}},
		{"String empty", r(f.String("empty")), result{"", true}},
		{"String int", r(f.String("u8")), result{"", false}},
		{"Strings", r(f.Strings("a.str")), result{[]string{"a", "", "<|im_start|>"}, true}},
		{"Strings ints", r(f.Strings("a.i32")), result{[]string(nil), false}},
		{"Strings scalar", r(f.Strings("str")), result{[]string(nil), false}},
		{"Ints i32", r(f.Ints("a.i32")), result{[]int64{3, 3, 1, -5}, true}},
		{"Ints u8", r(f.Ints("a.u8")), result{[]int64{1, 2, 255}, true}},
		{"Ints u64", r(f.Ints("a.u64")), result{[]int64{1, 1 << 62}, true}},
		{"Ints u64 too big", r(f.Ints("a.u64big")), result{[]int64(nil), false}},
		{"Ints strings", r(f.Ints("a.str")), result{[]int64(nil), false}},
		{"Ints bools", r(f.Ints("a.bool")), result{[]int64(nil), false}},
		{"Floats f32", r(f.Floats("a.f32")), result{[]float64{0.5, -1, math.Inf(1)}, true}},
		{"Floats f64", r(f.Floats("a.f64")), result{[]float64{math.Pi}, true}},
		{"Floats ints", r(f.Floats("a.i16")), result{[]float64{-32768, 7}, true}},
		{"Floats strings", r(f.Floats("a.str")), result{[]float64(nil), false}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	for key, want := range map[string]string{
		"u8":       "200",
		"str":      `"héllo\x00world"`,
		"a.i32":    "[4]int32{3, 3, 1, -5}",
		"a.str":    `[3]string{"a", "", "<|im_start|>"}`,
		"a.nested": `[3]array{[2]int32{1, 2}, [1]string{"x"}, [1]array{[1]uint8{9}}}`,
		"a.bool":   "[3]bool{true, false, true}",
	} {
		if got := f.Metadata[key].String(); got != want {
			t.Errorf("%s.String() = %s, want %s", key, got, want)
		}
	}
	long := Value{Type: TypeArray, ElemType: TypeUint16, v: make([]uint16, 20)}
	if got := long.String(); got != "[20]uint16{0, 0, 0, 0, 0, 0, 0, 0, …}" {
		t.Errorf("long array String() = %s", got)
	}
}

func TestTypes(t *testing.T) {
	for _, tc := range []struct {
		typ        Type
		name       string
		block, siz int
	}{
		{F32, "F32", 1, 4}, {F16, "F16", 1, 2}, {BF16, "BF16", 1, 2},
		{Q4_0, "Q4_0", 32, 18}, {Q4_1, "Q4_1", 32, 20}, {Q5_0, "Q5_0", 32, 22}, {Q5_1, "Q5_1", 32, 24},
		{Q8_0, "Q8_0", 32, 34}, {Q8_1, "Q8_1", 32, 36},
		{Q2_K, "Q2_K", 256, 84}, {Q3_K, "Q3_K", 256, 110}, {Q4_K, "Q4_K", 256, 144},
		{Q5_K, "Q5_K", 256, 176}, {Q6_K, "Q6_K", 256, 210}, {Q8_K, "Q8_K", 256, 292},
		{IQ2_XXS, "IQ2_XXS", 256, 66}, {IQ2_XS, "IQ2_XS", 256, 74}, {IQ3_XXS, "IQ3_XXS", 256, 98},
		{IQ1_S, "IQ1_S", 256, 50}, {IQ4_NL, "IQ4_NL", 32, 18}, {IQ3_S, "IQ3_S", 256, 110},
		{IQ2_S, "IQ2_S", 256, 82}, {IQ4_XS, "IQ4_XS", 256, 136}, {IQ1_M, "IQ1_M", 256, 56},
		{I8, "I8", 1, 1}, {I16, "I16", 1, 2}, {I32, "I32", 1, 4}, {I64, "I64", 1, 8}, {F64, "F64", 1, 8},
		{TQ1_0, "TQ1_0", 256, 54}, {TQ2_0, "TQ2_0", 256, 66}, {MXFP4, "MXFP4", 32, 17},
		{4, "type(4)", 0, 0}, {31, "type(31)", 0, 0}, {1000, "type(1000)", 0, 0},
	} {
		if tc.typ.String() != tc.name || tc.typ.BlockSize() != tc.block || tc.typ.TypeSize() != tc.siz || tc.typ.Known() != (tc.block > 0) {
			t.Errorf("%d: %s block %d size %d known %v, want %s %d %d", uint32(tc.typ), tc.typ, tc.typ.BlockSize(), tc.typ.TypeSize(), tc.typ.Known(), tc.name, tc.block, tc.siz)
		}
	}
	for _, tc := range []struct {
		typ  Type
		n    int
		want int
	}{
		{Q8_0, 384, 12 * 34}, {Q4_K, 512, 288}, {BF16, 3, 6}, {Q8_0, 33, 0}, {Type(4), 32, 0}, {F32, -1, 0},
	} {
		if got := tc.typ.RowBytes(tc.n); got != tc.want {
			t.Errorf("%s.RowBytes(%d) = %d, want %d", tc.typ, tc.n, got, tc.want)
		}
	}
	if TypeFloat32.String() != "float32" || ValueType(99).String() != "valuetype(99)" {
		t.Errorf("value type names %s %s", TypeFloat32, ValueType(99))
	}
}

// validSpec is a small well-formed file used as the base of corruptions.
func validSpec() ggufSpec {
	return ggufSpec{
		kvs: []kv{{"general.architecture", "llama"}, {"tokens", []string{"a", "b"}}, {"n", uint32(3)}},
		tensors: []testTensor{
			{name: "w", typ: F32, dims: []uint64{2, 2}, data: f32Bytes(1, 2, 3, 4)},
			{name: "q", typ: Q8_0, dims: []uint64{32}, data: make([]byte, 34)},
		},
	}
}

func TestParseErrors(t *testing.T) {
	u64 := func(x uint64) []byte { return binary.LittleEndian.AppendUint64(nil, x) }
	u32 := func(x uint32) []byte { return binary.LittleEndian.AppendUint32(nil, x) }
	off := func(x uint64) *uint64 { return &x }
	withKVs := func(kvs ...kv) []byte {
		s := validSpec()
		s.kvs = append(s.kvs, kvs...)
		return s.build()
	}
	withTensor := func(tt testTensor) []byte {
		s := validSpec()
		s.tensors = append(s.tensors, tt)
		return s.build()
	}
	header := func(version uint32, nTensors, nKV uint64) []byte {
		b := append([]byte(Magic), u32(version)...)
		return append(append(b, u64(nTensors)...), u64(nKV)...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "magic: needs 4 bytes"},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), "bad magic"},
		{"no version", []byte("GGUF\x03"), "version: needs 4 bytes"},
		{"version 1", header(1, 0, 0), "version 1 is not supported"},
		{"version 4", header(4, 0, 0), "unsupported version 4"},
		{"big endian", append([]byte(Magic), 0, 0, 0, 3), "big-endian"},
		{"no counts", header(3, 0, 0)[:12], "tensor count: needs 8 bytes"},
		{"huge tensor count", header(3, 1<<40, 0), "tensor count 1099511627776 at offset 8 is impossible"},
		{"huge kv count", header(3, 0, math.MaxUint64), "metadata count 18446744073709551615 at offset 16 is impossible"},
		{"kv count past data", header(3, 0, 1), "metadata count 1 at offset 16 is impossible"},
		{"huge key length", cat(header(3, 0, 1), u64(math.MaxUint64), make([]byte, 8)), "metadata pair 0 key: length 18446744073709551615 at offset 24 exceeds the 8 bytes left"},
		{"truncated value", cat(header(3, 0, 1), u64(1), []byte("k"), u32(uint32(TypeUint64)), []byte{1, 2}), `metadata "k": uint64 value needs 8 bytes`},
		{"unknown value type", withKVs(kv{"bad", rawValue{13, []byte{0}}}), `metadata "bad": unknown value type 13`},
		{"huge string", withKVs(kv{"s", rawValue{uint32(TypeString), u64(1 << 50)}}), `metadata "s": length 1125899906842624`},
		{"huge array", withKVs(kv{"a", rawValue{uint32(TypeArray), cat(u32(uint32(TypeUint32)), u64(1<<61))}}), `metadata "a" array length 2305843009213693952`},
		{"huge string array", withKVs(kv{"a", rawValue{uint32(TypeArray), cat(u32(uint32(TypeString)), u64(1<<40))}}), `metadata "a" array length 1099511627776`},
		{"bad string in array", withKVs(kv{"a", rawValue{uint32(TypeArray), cat(u32(uint32(TypeString)), u64(2), u64(0), u64(1<<40))}}), `metadata "a"[1]: string: length 1099511627776`},
		{"unknown element type", withKVs(kv{"a", rawValue{uint32(TypeArray), cat(u32(42), u64(0))}}), `metadata "a": unknown array element type 42`},
		{"too deep", withKVs(kv{"a", arr{TypeArray, []any{arr{TypeArray, []any{arr{TypeArray, []any{arr{TypeArray, []any{[]uint8{1}}}}}}}}}}), "nested deeper than 4"},
		{"duplicate key", withKVs(kv{"n", uint32(4)}), `metadata "n": duplicate key`},
		{"alignment 0", withKVs(kv{KeyAlignment, uint32(0)}), "general.alignment"},
		{"alignment 48", withKVs(kv{KeyAlignment, uint32(48)}), "48 is not a power of two"},
		{"alignment string", withKVs(kv{KeyAlignment, "32"}), "general.alignment"},
		{"too many dims", withTensor(testTensor{name: "x", typ: F32, dims: []uint64{1, 1, 1, 1, 1}, data: f32Bytes(1)}), `tensor "x": 5 dimensions`},
		{"unknown ggml type", withTensor(testTensor{name: "x", typ: 4, dims: []uint64{32}, data: make([]byte, 18)}), `tensor "x": unknown ggml type 4`},
		{"removed ggml type", withTensor(testTensor{name: "x", typ: 33, dims: []uint64{32}}), `unknown ggml type 33`},
		{"partial block", withTensor(testTensor{name: "x", typ: Q4_K, dims: []uint64{128, 2}, data: make([]byte, 144)}), `tensor "x": dims [128 2] do not fit Q4_K`},
		{"dims overflow", withTensor(testTensor{name: "x", typ: F32, dims: []uint64{1 << 32, 1 << 32}}), `tensor "x": dims [4294967296 4294967296] overflow`},
		{"bytes overflow", withTensor(testTensor{name: "x", typ: F64, dims: []uint64{1 << 61, 1}}), `tensor "x": dims [2305843009213693952 1] are too large`},
		{"data past end", withTensor(testTensor{name: "x", typ: F32, dims: []uint64{1000}, data: f32Bytes(1)}), `tensor "x": data needs 4000 bytes (1000 elements of F32)`},
		{"offset past end", withTensor(testTensor{name: "x", typ: F32, dims: []uint64{1}, data: f32Bytes(1), offset: off(math.MaxUint64 - 31)}), `tensor "x": offset`},
		{"offset far past end", withTensor(testTensor{name: "x", typ: F32, dims: []uint64{1}, data: f32Bytes(1), offset: off(1 << 40)}), `tensor "x": offset 1099511627776 (+ data section start 256) is past`},
		{"misaligned offset", withTensor(testTensor{name: "x", typ: F32, dims: []uint64{1}, data: f32Bytes(1), offset: off(4)}), `tensor "x": offset 4 is not a multiple of the alignment 32`},
		{"duplicate tensor", withTensor(testTensor{name: "w", typ: F32, dims: []uint64{1}, data: f32Bytes(1)}), `tensor "w": duplicate name`},
		{"truncated tensor info", cat(header(3, 1, 0), u64(1), []byte("t"), u32(1), u64(4), u32(0), u32(0)), `tensor "t" offset: needs 8 bytes`},
		{"truncated dims", cat(header(3, 1, 0), u64(1), []byte("t"), u32(4), u64(4), u64(4), make([]byte, 5)), `tensor "t" dim 2: value: needs 8 bytes`},
		{"huge tensor name", cat(header(3, 1, 0), u64(1<<40), make([]byte, 24)), "tensor 0 name: length 1099511627776"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.data)
			if err == nil {
				t.Fatalf("Parse succeeded: %d tensors", len(f.Tensors))
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Fatalf("err = %v\nwant it to mention %q", err, tc.want)
			}
		})
	}
}

// TestParseTruncated cuts a valid file at every length: each strict prefix
// must fail cleanly (the file ends with tensor data).
func TestParseTruncated(t *testing.T) {
	s := validSpec()
	s.kvs = allTypesKVs()
	data := s.build()
	if _, err := Parse(data); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(data); n++ {
		cut := bytes.Clone(data[:n]) // a fresh slice so reads past n would be caught by the race/bounds checks
		if _, err := Parse(cut); err == nil {
			t.Fatalf("prefix of %d/%d bytes parsed without error", n, len(data))
		}
	}
}

// TestParseNoTensors checks a metadata-only file that ends right after the
// header without padding.
func TestParseNoTensors(t *testing.T) {
	data := ggufSpec{version: 2, kvs: []kv{{"general.architecture", "x"}}}.build()
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 0 || f.Architecture() != "x" || f.Version != 2 {
		t.Fatalf("%+v", f)
	}
}
