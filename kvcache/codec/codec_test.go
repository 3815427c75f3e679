package codec

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

// synthetic returns a chunk whose rows drift slowly, as neighbouring
// tokens' keys and values do, with a few outlier channels.
func synthetic(layers, heads, dim, tokens int, seed uint64) *Chunk {
	r := rand.New(rand.NewPCG(seed, 1))
	c := NewChunk(layers, heads, dim, tokens, 64)
	for l := range layers {
		for h := range heads {
			base := make([]float32, dim)
			for ch := range base {
				base[ch] = float32(r.NormFloat64())
				if ch%17 == 0 {
					base[ch] *= 8
				}
			}
			for t := range tokens {
				k, v := c.Row(l, h, t)
				for ch := range dim {
					base[ch] += 0.1 * float32(r.NormFloat64())
					k[ch] = base[ch] + 0.3*float32(r.NormFloat64())
					v[ch] = 0.5*base[ch] + float32(r.NormFloat64())
				}
			}
		}
	}
	return c
}

// relErr is ‖a−b‖ / ‖a‖.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(a[i]) * float64(a[i])
	}
	return math.Sqrt(num / den)
}

func TestRoundTrip(t *testing.T) {
	c := synthetic(3, 2, 64, 100, 1) // 100 tokens: a partial anchor group and KIVI group
	bf16 := len(Encode(c, mustLevel(t, "bf16")))
	tests := []struct {
		level  string
		maxErr float64 // relative L2 error of keys and values
	}{
		{"bf16", 0.005},
		{"int8", 0.01},
		{"int4", 0.12},
		// CacheGen: a step of base·(0.5…1.5) delta RMS errs by about
		// step/√12; these rows drift, so deltas are about as large as the
		// per-token noise: ≈ 0.3·base of the values' norm.
		{"cg1", 0.08},
		{"cg2", 0.15},
		{"cg3", 0.3},
		{"cg4", 0.6},
	}
	prevSize := 1 << 30
	for _, tc := range tests {
		t.Run(tc.level, func(t *testing.T) {
			l := mustLevel(t, tc.level)
			b := Encode(c, l)
			d, got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != l || d.Layers != c.Layers || d.Heads != c.Heads || d.Dim != c.Dim || d.Tokens != c.Tokens || d.Start != c.Start {
				t.Fatalf("decoded %s %d×%d×%d×%d@%d, want %s %d×%d×%d×%d@%d", got, d.Layers, d.Heads, d.Dim, d.Tokens, d.Start, l, c.Layers, c.Heads, c.Dim, c.Tokens, c.Start)
			}
			ek, ev := relErr(c.K, d.K), relErr(c.V, d.V)
			if ek > tc.maxErr || ev > tc.maxErr {
				t.Errorf("relative error keys %.4f values %.4f, want ≤ %.4f", ek, ev, tc.maxErr)
			}
			if tc.level[:2] == "cg" {
				if len(b) >= prevSize {
					t.Errorf("%d bytes, not fewer than the finer level's %d", len(b), prevSize)
				}
				prevSize = len(b)
			}
			t.Logf("%s: %d bytes (%.2f× smaller than bf16), error keys %.4f values %.4f", l, len(b), float64(bf16)/float64(len(b)), ek, ev)
		})
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	c := synthetic(2, 2, 32, 40, 2)
	for _, l := range Levels() {
		b := Encode(c, l)
		for _, cut := range []int{0, 3, 5, len(b) / 2, len(b) - 1} {
			if _, _, err := Decode(b[:cut]); err == nil {
				t.Errorf("%s: %d of %d bytes decoded without an error", l, cut, len(b))
			}
		}
		if _, _, err := Decode(append(b, 0)); err == nil {
			t.Errorf("%s: a trailing byte decoded without an error", l)
		}
	}
}

func TestRANS(t *testing.T) {
	tests := []struct {
		name string
		syms []uint8
	}{
		{"one symbol", []uint8{7}},
		{"constant", make([]uint8, 1000)},
		{"skewed", func() []uint8 {
			r := rand.New(rand.NewPCG(3, 3))
			s := make([]uint8, 5000)
			for i := range s {
				s[i] = zigzag(int(math.Round(r.NormFloat64() * 3)))
			}
			return s
		}()},
		{"every byte", func() []uint8 {
			s := make([]uint8, 512)
			for i := range s {
				s[i] = uint8(i)
			}
			return s
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var counts [alphabet]uint64
			for _, s := range tc.syms {
				counts[s]++
			}
			tab := newFreqTable(&counts)
			b := ransEncode(tab.appendTo(nil), tc.syms, tab)
			r := &reader{b: b}
			tab2, err := readFreqTable(r)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]uint8, len(tc.syms))
			if err := ransDecode(r, got, tab2); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if got[i] != tc.syms[i] {
					t.Fatalf("symbol %d: got %d, want %d", i, got[i], tc.syms[i])
				}
			}
		})
	}
}

func TestSeqRoundTrip(t *testing.T) {
	pool := kvcache.NewPool(kvcache.PoolConfig{Layers: 2, KVHeads: 2, HeadDim: 16, Format: kvcache.F32})
	src := pool.NewSeq()
	defer src.Release()
	r := rand.New(rand.NewPCG(4, 4))
	k, v := make([]float32, 16), make([]float32, 16)
	for p := range 70 {
		for l := range 2 {
			for h := range 2 {
				for i := range k {
					k[i], v[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
				}
				src.Append(l, h, k, v, p)
			}
		}
		src.Advance(1)
	}
	dst := pool.NewSeq()
	defer dst.Release()
	for start := 0; start < 70; start += 32 {
		n := min(32, 70-start)
		c, err := FromSeq(src, start, n)
		if err != nil {
			t.Fatal(err)
		}
		d, _, err := Decode(Encode(c, mustLevel(t, "bf16")))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AppendTo(dst); err != nil {
			t.Fatal(err)
		}
	}
	if dst.Next() != 70 {
		t.Fatalf("next %d, want 70", dst.Next())
	}
	a, b := make([]float32, 16), make([]float32, 16)
	for l := range 2 {
		for h := range 2 {
			for j := range 70 {
				src.View(l, h).Key(j, a)
				dst.View(l, h).Key(j, b)
				if e := relErr(a, b); e > 0.01 || dst.View(l, h).Pos(j) != j {
					t.Fatalf("layer %d head %d token %d: error %.4f, position %d", l, h, j, e, dst.View(l, h).Pos(j))
				}
			}
		}
	}
	// A chunk that does not start where the cache ends is refused.
	c, _ := FromSeq(src, 0, 8)
	if err := c.AppendTo(dst); err == nil {
		t.Error("a chunk at position 0 appended to a cache at 70")
	}
}

func FuzzDecode(f *testing.F) {
	c := synthetic(1, 1, 8, 20, 5)
	for _, l := range Levels() {
		f.Add(Encode(c, l))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, l, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes at its level and decodes again.
		if _, _, err := Decode(Encode(d, l)); err != nil {
			t.Fatalf("re-encoding a decoded chunk: %v", err)
		}
	})
}

func mustLevel(t testing.TB, s string) Level {
	l, err := ParseLevel(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// BenchmarkCodec measures each level on a 256-token chunk of tinychat's
// shape (8 layers × 2 KV heads × 64 dims): bytes per token and encode and
// decode speed in bf16-equivalent MB/s.
func BenchmarkCodec(b *testing.B) {
	c := synthetic(8, 2, 64, 256, 6)
	bf16 := float64(2 * len(c.K) * 2)
	for _, l := range Levels() {
		enc := Encode(c, l)
		b.Run("encode/"+l.String(), func(b *testing.B) {
			b.SetBytes(int64(bf16))
			for b.Loop() {
				Encode(c, l)
			}
			b.ReportMetric(float64(len(enc))/float64(c.Tokens), "B/token")
			b.ReportMetric(bf16/float64(len(enc)), "x_vs_bf16")
		})
		b.Run("decode/"+l.String(), func(b *testing.B) {
			b.SetBytes(int64(bf16))
			for b.Loop() {
				if _, _, err := Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
