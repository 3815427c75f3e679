package press

import (
	"fmt"
	"math"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// TestThinKAndGEAROnAModel prefills a tiny llama fixture (2 layers, 2 KV
// heads of 16 channels, 4 query heads), compresses a fork with each ThinK
// and GEAR press through Compress, and checks the tokens each head keeps,
// the bytes it holds (exactly, from the layouts), and that a few decode
// steps read the compressed storage and stay close to the full cache's
// logits.
func TestThinKAndGEAROnAModel(t *testing.T) {
	const n = 300
	m, tokens := loadFixture(t, llamaFixture, n)
	c := m.Config
	next := []int{7, 11, 13}
	cases := []struct {
		name      string
		ratio     float64
		kept      int // tokens per head
		wantBytes func(kvcache.PoolConfig, int64) int64
	}{
		{"think", 0.5, n, thinkBytes(n, 8)},
		{"think", 0.25, n, thinkBytes(n, 12)},
		{"snapkv+think", 0.5, n / 2, thinkBytes(n/2, 8)},
		{"gear4", 0, n, gearBytes(n, 4)},
		{"gear2", 0, n, gearBytes(n, 2)},
		{"keydiff+gear4", 0.5, n / 2, gearBytes(n/2, 4)},
	}
	var presses []*Press
	for _, tc := range cases {
		p, err := Parse(tc.name, tc.ratio)
		if err != nil {
			t.Fatal(err)
		}
		presses = append(presses, p)
	}
	for _, format := range []kvcache.Format{kvcache.F32, kvcache.BF16} {
		base := m.NewPool(0, format).NewSeq()
		obs := Observer(presses, 0, n)
		if _, err := m.ForwardObserved(base, tokens, model.NoLogits, obs); err != nil {
			t.Fatal(err)
		}
		ref := decode(t, m, base, n, next)
		cosines := map[string]float64{}
		full := base.StoredBytes()
		for i, tc := range cases {
			p := presses[i]
			seq, err := base.Fork(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Compress(m, seq, obs); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			for l := range c.Layers {
				for g := range c.KVHeads {
					if got := seq.Len(l, g); got != tc.kept {
						t.Errorf("%s %s: layer %d head %d keeps %d tokens, want %d", tc.name, format, l, g, got, tc.kept)
					}
				}
			}
			cfg := seq.Pool().Config()
			want := int64(c.Layers*c.KVHeads) * tc.wantBytes(cfg, seq.Pool().BlockBytes())
			if got := seq.StoredBytes(); got != want {
				t.Errorf("%s %.2f %s: %d bytes stored, want %d (full cache %d)", tc.name, tc.ratio, format, got, want, full)
			}
			got := decode(t, m, seq, n, next)
			// The same cache widened into plain f32 rows: attention over the
			// compressed storage must compute exactly what it reads back.
			// (In a bf16 pool the widened copy would round what it holds.)
			if format == kvcache.F32 {
				wide := widened(t, m, seq)
				if d := maxDiff(got, decode(t, m, wide, n, next)); d > 1e-3 {
					t.Errorf("%s %.2f %s: decode logits differ by %g from the widened cache's", tc.name, tc.ratio, format, d)
				}
				wide.Release()
			}
			cos := cosine(ref, got)
			cosines[fmt.Sprintf("%s %.2f", tc.name, tc.ratio)] = cos
			t.Logf("%s %.2f %s: %d of %d bytes, decode logits cosine %.4f", tc.name, tc.ratio, format, seq.StoredBytes(), full, cos)
			seq.Release()
		}
		checkThinKDistortion(t, m, base, obs, n, format)
		// What GEAR's corrections add over plain codes with the same
		// 64-token window.
		for _, alt := range []struct {
			name, than string
			run        func(*kvcache.Seq) error
		}{
			{"kivi4 window 64", "gear4 0.00", func(seq *kvcache.Seq) error { return seq.Quantize(kvcache.Int4, 64) }},
			{"kivi2 window 64", "gear2 0.00", func(seq *kvcache.Seq) error { return seq.Quantize(kvcache.Int2, 64) }},
		} {
			seq, err := base.Fork(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := alt.run(seq); err != nil {
				t.Fatal(err)
			}
			cos := cosine(ref, decode(t, m, seq, n, next))
			t.Logf("%s %s: %d of %d bytes, decode logits cosine %.4f", alt.name, format, seq.StoredBytes(), full, cos)
			if better := cosines[alt.than]; better <= cos {
				t.Errorf("%s %s: cosine %.4f, not above %s's %.4f", alt.than, format, better, alt.name, cos)
			}
			seq.Release()
		}
		base.Release()
	}
}

// decode forks seq, runs the tokens next one at a time after position n,
// and returns every step's logits, checking that they are finite.
func decode(t *testing.T, m *model.Model, seq *kvcache.Seq, n int, next []int) []float32 {
	t.Helper()
	f, err := seq.Fork(n)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	var out []float32
	for _, tok := range next {
		logits, err := m.Forward(f, []int{tok}, model.LastLogits)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range logits {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("decoding: logit %v", v)
			}
		}
		out = append(out, logits...)
	}
	return out
}

// widened copies seq into a new f32 sequence of plain rows, token by
// token, as its views read back.
func widened(t *testing.T, m *model.Model, seq *kvcache.Seq) *kvcache.Seq {
	t.Helper()
	c := m.Config
	out := m.NewPool(0, seq.Pool().Config().Format).NewSeq()
	k, v := make([]float32, c.HeadDim), make([]float32, c.HeadDim)
	for l := range c.Layers {
		for g := range c.KVHeads {
			view := seq.View(l, g)
			for j := range view.Len() {
				view.Key(j, k)
				view.Value(j, v)
				out.Append(l, g, k, v, view.Pos(j))
			}
		}
	}
	out.Advance(seq.Next())
	return out
}

// checkThinKDistortion checks ThinK's objective: the window queries'
// attention logits over the cached keys move less when ThinK prunes half
// the key channels than when the other half goes.
func checkThinKDistortion(t *testing.T, m *model.Model, base *kvcache.Seq, obs *model.Observer, n int, format kvcache.Format) {
	t.Helper()
	c := m.Config
	p, err := Parse("think", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	think, _ := base.Fork(n)
	anti, _ := base.Fork(n)
	defer think.Release()
	defer anti.Release()
	if err := p.Compress(m, think, obs); err != nil {
		t.Fatal(err)
	}
	if err := antiThinK(m, anti, obs, 8); err != nil {
		t.Fatal(err)
	}
	d, group := c.HeadDim, c.Heads/c.KVHeads
	ref, got := make([]float32, n), make([]float32, n)
	for l := range c.Layers {
		q := obs.Queries[l]
		q = q[len(q)-32*c.Heads*d:]
		for g := range c.KVHeads {
			var et, ea float64
			for w := range 32 {
				for hh := g * group; hh < (g+1)*group; hh++ {
					qw := q[(w*c.Heads+hh)*d : (w*c.Heads+hh+1)*d]
					base.View(l, g).Scores(ref, qw, 0, n, 1)
					think.View(l, g).Scores(got, qw, 0, n, 1)
					et += sqDist(ref, got)
					anti.View(l, g).Scores(got, qw, 0, n, 1)
					ea += sqDist(ref, got)
				}
			}
			t.Logf("%s layer %d head %d: window logits moved by %.4g with think, %.4g with the opposite channels", format, l, g, math.Sqrt(et), math.Sqrt(ea))
			if et >= ea {
				t.Errorf("%s layer %d head %d: think moves the window's logits by %.4g, the opposite channels by %.4g", format, l, g, math.Sqrt(et), math.Sqrt(ea))
			}
		}
	}
}

func sqDist(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Pow(float64(a[i]-b[i]), 2)
	}
	return s
}

// antiThinK prunes drop key channels of every head as ThinK would, but
// the most important ones instead of the least.
func antiThinK(m *model.Model, seq *kvcache.Seq, obs *model.Observer, drop int) error {
	c := m.Config
	for l := range c.Layers {
		q := obs.Queries[l]
		q = q[len(q)-32*c.Heads*c.HeadDim:]
		for g := range c.KVHeads {
			score := channelScores(q, c.Heads, c.KVHeads, c.HeadDim, g, seq.View(l, g))
			for i := range score {
				score[i] = -score[i]
			}
			if err := seq.PruneKeyChannels(l, g, keepChannels(score, drop), 32); err != nil {
				return err
			}
		}
	}
	return nil
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// thinkBytes is one head's bytes after ThinK kept keep channels of kept
// tokens: every block wholly before the last 32 tokens holds only the
// kept key channels and their uint16 indices.
func thinkBytes(kept, keep int) func(kvcache.PoolConfig, int64) int64 {
	return func(cfg kvcache.PoolConfig, block int64) int64 {
		bt, d := cfg.BlockTokens, cfg.HeadDim
		el := int64(4)
		if cfg.Format == kvcache.BF16 {
			el = 2
		}
		blocks := int64((kept + bt - 1) / bt)
		pruned := int64((kept - 32) / bt)
		saved := int64(bt*(d-keep))*el - int64(2*keep)
		return blocks*block - pruned*saved
	}
}

// gearBytes is one head's bytes after GEAR with bits-bit codes: every
// block wholly before the 64-token buffer holds codes, float16 scales and
// zeros, its rank-4 rows of A and 2 % sparse entries (4 bytes each) for
// keys and values; the segment's B (d × 4 float16) is counted once for
// keys and once for values.
func gearBytes(kept, bits int) func(kvcache.PoolConfig, int64) int64 {
	return func(cfg kvcache.PoolConfig, block int64) int64 {
		bt, d := cfg.BlockTokens, cfg.HeadDim
		blocks := int64((kept + bt - 1) / bt)
		sealed := int64((kept - 64) / bt)
		codes := bt * d * bits / 8
		sparse := 4 * int(math.Round(0.02*float64(bt*d)))
		a := 2 * bt * 4
		k := codes + 2*2*d + a + sparse
		v := codes + 2*2*bt*((d+kvcache.ValueGroup-1)/kvcache.ValueGroup) + a + sparse
		per := int64(k + v + 4*bt)
		return sealed*per + 2*2*int64(d*4) + (blocks-sealed)*block
	}
}
