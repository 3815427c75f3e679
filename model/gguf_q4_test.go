package model

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/gguf"
)

// randHalf returns the bits of a random finite half: mostly normal values
// of magnitude 2^-14…2^15, some zeros, subnormals and extremes.
func randHalf(rng *rand.Rand) uint16 {
	sign := uint16(rng.IntN(2)) << 15
	switch rng.IntN(16) {
	case 0:
		return sign // ±0
	case 1:
		return sign | uint16(1+rng.IntN(0x3ff)) // subnormal
	case 2:
		return sign | 0x7bff // ±65504
	}
	return sign | uint16(1+rng.IntN(30))<<10 | uint16(rng.IntN(1024))
}

// randGGMLBlocks returns nb random blocks of typ (Q4_0, Q4_1 or Q4_K):
// random bytes everywhere, halves finite.
func randGGMLBlocks(rng *rand.Rand, typ gguf.Type, nb int) []byte {
	ts := typ.TypeSize()
	out := make([]byte, nb*ts)
	for i := range out {
		out[i] = byte(rng.Uint32())
	}
	halves := 1 // Q4_0: d
	if typ != gguf.Q4_0 {
		halves = 2 // Q4_1: d, m; Q4_K: d, dmin
	}
	for b := range nb {
		for h := range halves {
			binary.LittleEndian.PutUint16(out[b*ts+2*h:], randHalf(rng))
		}
	}
	return out
}

// TestQ4FromGGMLExact loads random Q4_0, Q4_1 and Q4_K blocks as matrices
// (Q4_0 and Q4_K in their own blocks, Q4_1 converted to compute.Q4) and
// checks that both kernel sets widen them to exactly the values of gguf's
// dequantizers: the same bits, except that a zero may have the other sign.
func TestQ4FromGGMLExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(101, 102))
	for _, typ := range []gguf.Type{gguf.Q4_0, gguf.Q4_1, gguf.Q4_K} {
		const rows = 40
		cols := 2 * typ.BlockSize()
		src := randGGMLBlocks(rng, typ, rows*cols/typ.BlockSize())
		want := make([]float32, rows*cols)
		if err := gguf.DequantizeRow(typ, src, want); err != nil {
			t.Fatal(err)
		}
		w, err := ggufMat(&gguf.Tensor{Name: "w", Type: typ, Data: src}, rows, cols, 0)
		if err != nil {
			t.Fatal(err)
		}
		if dt, ok := GGUFMatDType(typ); w.DType != dt || !ok {
			t.Fatalf("%s: matrix is %v, GGUFMatDType says %v", typ, w.DType, dt)
		}
		for _, generic := range []bool{true, false} {
			restore := compute.UseGeneric(generic)
			got := matF32(w)
			restore()
			zeros := 0
			for i, g := range got {
				if math.Float32bits(g) == math.Float32bits(want[i]) {
					continue
				}
				if g == 0 && want[i] == 0 {
					zeros++
					continue
				}
				t.Fatalf("%s (generic %v): element %d is %v (%#08x), ggml's %v (%#08x)", typ, generic, i, g, math.Float32bits(g), want[i], math.Float32bits(want[i]))
			}
			if generic {
				t.Logf("%s: %d elements equal, %d of them zeros of the other sign", typ, len(got), zeros)
			}
		}
	}
}

// quantizeQ4K encodes float32 values (a multiple of 256) as Q4_K blocks:
// per 32-element sub-block an affine range [lo, hi] with lo ≤ 0, its step
// (hi−lo)/15 and −lo quantized to 6 bits against the super-block's half
// d and dmin, then each code rounded and clamped to 0…15.
func quantizeQ4K(v []float32) []byte {
	var out []byte
	le := binary.LittleEndian
	for b := 0; b < len(v); b += 256 {
		var step, neg [8]float64
		var maxStep, maxNeg float64
		for k := range 8 {
			lo, hi := 0.0, math.Inf(-1)
			for _, x := range v[b+32*k : b+32*k+32] {
				lo, hi = min(lo, float64(x)), max(hi, float64(x))
			}
			step[k], neg[k] = (hi-lo)/15, -lo
			maxStep, maxNeg = max(maxStep, step[k]), max(maxNeg, neg[k])
		}
		hd, hm := f32ToF16(float32(maxStep/63)), f32ToF16(float32(maxNeg/63))
		d, dmin := float64(compute.F16ToF32(hd)), float64(compute.F16ToF32(hm))
		var sc, mn [8]uint8
		q6 := func(x, unit float64) uint8 {
			if unit == 0 {
				return 0
			}
			return uint8(min(63, max(0, math.Round(x/unit))))
		}
		blk := make([]byte, 144)
		le.PutUint16(blk, hd)
		le.PutUint16(blk[2:], hm)
		s := blk[4:16]
		for k := range 8 {
			sc[k], mn[k] = q6(step[k], d), q6(neg[k], dmin)
			if k < 4 {
				s[k] |= sc[k]
				s[k+4] |= mn[k]
			} else {
				s[k+4] = sc[k]&15 | mn[k]&15<<4
				s[k-4] |= sc[k] >> 4 << 6
				s[k] |= mn[k] >> 4 << 6
			}
		}
		for k := range 8 {
			scale, off := d*float64(sc[k]), dmin*float64(mn[k])
			for l := range 32 {
				q := 0.0
				if scale > 0 {
					q = min(15, max(0, math.Round((float64(v[b+32*k+l])+off)/scale)))
				}
				blk[16+32*(k/2)+l] |= byte(q) << (4 * (k % 2))
			}
		}
		out = append(out, blk...)
	}
	return out
}

// TestGGUFQ4Tinychat quantizes tinychat's matrices to 4 bits (ffn_down,
// whose rows are 1024 long, as Q4_K; the 384-long others, embeddings
// included, as Q4_0, as llama.cpp does where rows are no multiple of 256)
// and writes two GGUF files: the 4-bit one, and a twin with the same
// weights dequantized to F32. The 4-bit model must load in its own blocks
// (compute.Q4_0 and compute.Q4_K) with the twin's weights exactly and give the twin's logits to float32
// rounding, in prefill (q4ToF32 and the GEMM) and decode (dotQ4; with the
// AVX2 set the very bits, as dotQ4 sums in the F32 dot's order). How far
// 4 bits take tinychat from BF16 is logged, not checked.
func TestGGUFQ4Tinychat(t *testing.T) {
	data, err := os.ReadFile(ggufFixture(t, "tinychat-bf16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var kvs []ggufKV
	for _, k := range src.Keys {
		switch v := src.Metadata[k].Any().(type) {
		case uint32, float32, string, bool, []string, []int32, []bool:
			kvs = append(kvs, ggufKV{k, v})
		}
	}
	var q4, twin []ggufT
	for _, tn := range src.Tensors {
		out := ggufT{name: tn.Name, typ: tn.Type, dims: tn.Dims, data: tn.Data}
		if len(tn.Dims) == 2 {
			typ := gguf.Q4_0
			if strings.HasSuffix(tn.Name, "ffn_down.weight") {
				typ = gguf.Q4_K
			}
			v := make([]float32, tn.Elements())
			if err := gguf.Dequantize(tn, v); err != nil {
				t.Fatal(err)
			}
			out.typ = typ
			if typ == gguf.Q4_K {
				out.data = quantizeQ4K(v)
			} else if tn.Type == gguf.BF16 {
				out.data = requantize(t, ggufT{data: tn.Data}, typ)
			} else {
				t.Fatalf("%s is %s, want BF16", tn.Name, tn.Type)
			}
		}
		q4 = append(q4, out)
		tw := out
		if tw.typ != tn.Type {
			v := make([]float32, tn.Elements())
			if err := gguf.DequantizeRow(out.typ, out.data, v); err != nil {
				t.Fatal(err)
			}
			tw.typ, tw.data = gguf.F32, f32Bytes(v)
		}
		twin = append(twin, tw)
	}
	dir := t.TempDir()
	write := func(name string, ts []ggufT) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, writeGGUF(kvs, ts), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	qm, _ := loadGGUF(t, write("q4.gguf", q4))
	fm, _ := loadGGUF(t, write("twin.gguf", twin))
	bm, _ := loadGGUF(t, ggufFixture(t, "tinychat-bf16.gguf"))

	ms, fms := mats(qm), mats(fm)
	var q4Bytes, f32Bytes int64
	for n, m := range ms {
		if m.DType != compute.Q4_0 && m.DType != compute.Q4_K {
			t.Fatalf("matrix %s is %v, want q4_0 or q4_k", n, m.DType)
		}
		if d := maxAbsDiff(matF32(m), matF32(fms[n])); d != 0 {
			t.Fatalf("matrix %s differs from its F32 twin by %g", n, d)
		}
		if n != "head" { // tied to embed
			q4Bytes += m.Bytes()
			f32Bytes += fms[n].Bytes()
		}
	}
	t.Logf("matrices: %d bytes as q4, %d as f32 (%.2f bits a weight)", q4Bytes, f32Bytes, 8*float64(q4Bytes)/float64(f32Bytes/4))

	var golden []chatGolden
	readJSON(t, "testdata/tinychat/golden.json", &golden)
	for _, g := range golden[:2] {
		t.Run(g.Name, func(t *testing.T) {
			// Prefill: the layers widen exactly and share the twin's GEMM,
			// as does the head's one row of last logits.
			got, want := lastLogits(t, qm, g.InputIDs), lastLogits(t, fm, g.InputIDs)
			if d := maxAbsDiff(got, want) / maxAbs(want); d > 1e-5 {
				t.Errorf("prefill logits differ from the F32 twin's by %.2g of their largest", d)
			}
			// Decode: rows widened a few at a time against the twin's F32 kernels.
			const steps = 12
			qc, fc := qm.NewCache(), fm.NewCache()
			ql, _ := qm.Forward(qc, g.InputIDs, LastLogits)
			fl, _ := fm.Forward(fc, g.InputIDs, LastLogits)
			var worst float64
			for range steps {
				id := argmax(fl)
				var err error
				if ql, err = qm.Forward(qc, []int{id}, LastLogits); err != nil {
					t.Fatal(err)
				}
				if fl, err = fm.Forward(fc, []int{id}, LastLogits); err != nil {
					t.Fatal(err)
				}
				worst = max(worst, maxAbsDiff(ql, fl)/maxAbs(fl))
			}
			if worst > 1e-4 {
				t.Errorf("decode logits differ from the F32 twin's by %.2g of their largest", worst)
			}
			// Against BF16: the 4-bit model's own error, for the record.
			ids, first := greedyLogits(t, qm, g.InputIDs, len(g.GreedyIDs), 2, 0)
			bf := lastLogits(t, bm, g.InputIDs)
			same := 0
			for i := range min(len(ids), len(g.GreedyIDs)) {
				if ids[i] != g.GreedyIDs[i] {
					break
				}
				same++
			}
			t.Logf("decode vs twin: %.2g relative; vs bf16: max |Δ logit| %.3f (largest %.3f), argmax %v, greedy ids agree for %d of %d",
				worst, maxAbsDiff(first, bf), maxAbs(bf), argmax(first) == argmax(bf), same, len(g.GreedyIDs))
		})
	}
}

// TestGGUFMatDType lists the storage type of each GGUF matrix type.
func TestGGUFMatDType(t *testing.T) {
	for _, c := range []struct {
		typ  gguf.Type
		want compute.DType
		ok   bool
	}{
		{gguf.F32, compute.F32, true}, {gguf.F16, compute.F32, true}, {gguf.BF16, compute.BF16, true},
		{gguf.Q8_0, compute.Q8_0, true}, {gguf.Q4_0, compute.Q4_0, true}, {gguf.Q4_1, compute.Q4, true},
		{gguf.Q4_K, compute.Q4_K, true}, {gguf.Q6_K, compute.Q6_K, true}, {gguf.Q5_0, compute.Q5_0, true}, {gguf.Q5_K, compute.F32, true},
		{gguf.IQ4_NL, compute.F32, false},
	} {
		if got, ok := GGUFMatDType(c.typ); got != c.want || ok != c.ok {
			t.Errorf("GGUFMatDType(%s) = %v, %v; want %v, %v", c.typ, got, ok, c.want, c.ok)
		}
	}
}
