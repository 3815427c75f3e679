package press

import (
	"math"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// mergeFixture is a model prefilled with n tokens and the full cache's
// logits for one more token.
type mergeFixture struct {
	m    *model.Model
	base *kvcache.Seq
	obs  *model.Observer
	n    int
	ref  []float32
}

func newMergeFixture(t *testing.T, dir string, n int, presses []*Press) *mergeFixture {
	t.Helper()
	m, tokens := loadFixture(t, dir, n)
	f := &mergeFixture{m: m, base: m.NewCache(), n: n}
	t.Cleanup(f.base.Release)
	f.obs = Observer(presses, 0, n)
	if _, err := m.ForwardObserved(f.base, tokens, model.NoLogits, f.obs); err != nil {
		t.Fatal(err)
	}
	f.ref = f.decode(t, f.fork(t))
	return f
}

func (f *mergeFixture) fork(t *testing.T) *kvcache.Seq {
	t.Helper()
	seq, err := f.base.Fork(f.n)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// decode runs one more token on seq (then releases it) and returns its
// logits, checked finite.
func (f *mergeFixture) decode(t *testing.T, seq *kvcache.Seq) []float32 {
	t.Helper()
	defer seq.Release()
	logits, err := f.m.Forward(seq, []int{5}, model.LastLogits)
	if err != nil {
		t.Fatalf("decoding after compression: %v", err)
	}
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %d is %v", i, v)
		}
	}
	return append([]float32(nil), logits...)
}

// logitCos returns the cosine similarity of two logit vectors.
func logitCos(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// TestKVMergesOnAModel runs ems and chelsea on a tiny llama fixture: every
// head keeps exactly ⌊n·(1 − ratio)⌋ tokens in position order, the blocks
// of the rest go back to the pool, and the cache still decodes to logits
// near the full cache's (at least as near as plain eviction at the same
// ratio gets, give or take, for ems).
func TestKVMergesOnAModel(t *testing.T) {
	const n = 300
	var presses []*Press
	for _, name := range []string{"ems", "chelsea", "snapkv"} {
		for _, r := range []float64{0.5, 0.75} {
			p, err := New(name, r)
			if err != nil {
				t.Fatal(err)
			}
			presses = append(presses, p)
		}
	}
	f := newMergeFixture(t, "../models/tinychat", n, presses)
	c := f.m.Config
	full := f.base.StoredBytes()
	for _, p := range presses {
		seq := f.fork(t)
		if err := p.Apply(f.m, seq, f.obs); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		k := int(float64(n) * (1 - p.Ratio))
		for l := range c.Layers {
			for g := range c.KVHeads {
				if got := seq.Len(l, g); got != k {
					t.Errorf("%s %.2f: layer %d head %d keeps %d, want %d", p.Name, p.Ratio, l, g, got, k)
				}
				v := seq.View(l, g)
				for j := 1; j < v.Len(); j++ {
					if v.Pos(j) <= v.Pos(j-1) {
						t.Fatalf("%s: layer %d head %d positions out of order", p.Name, l, g)
					}
				}
			}
		}
		blocks := (k + seq.Pool().Config().BlockTokens - 1) / seq.Pool().Config().BlockTokens
		if got, want := seq.StoredBytes(), int64(c.Layers*c.KVHeads*blocks)*seq.Pool().BlockBytes(); got != want {
			t.Errorf("%s %.2f: %d bytes stored, want %d (of %d full)", p.Name, p.Ratio, got, want, full)
		}
		stored := seq.StoredBytes()
		cos := logitCos(f.decode(t, seq), f.ref)
		t.Logf("%s %.2f: %d tokens per head, %d of %d bytes, logit cosine to the full cache %.5f", p.Name, p.Ratio, k, stored, full, cos)
		if cos < 0.9 {
			t.Errorf("%s %.2f: logits far from the full cache's (cosine %.4f)", p.Name, p.Ratio, cos)
		}
	}
}

// TestMiniCacheOnAModel runs minicache on the bundled 8-layer model (pairs
// 4–5 and 6–7) and on a 3-layer gemma3 fixture (pair 1–2, a global and a
// sliding-window layer): every head keeps all its tokens, the deeper layer
// of each pair reads the shallower one's blocks, the bytes fall by exactly
// the deeper heads' blocks less their scales and retained tokens, and the
// cache decodes to logits near the full cache's (on the bundled model;
// the fixture's weights are random). minicache+kivi4 still decodes: the
// quantization seals both layers' blocks apart, so the sharing is undone.
func TestMiniCacheOnAModel(t *testing.T) {
	for _, tc := range []struct {
		dir    string
		n      int
		minCos float64
	}{
		{"../models/tinychat", 300, 0.95},
		{"../model/testdata/archs/gemma3", 200, -1}, // random weights: only finite logits are asked for
	} {
		f := newMergeFixture(t, tc.dir, tc.n, nil)
		c := f.m.Config
		mc := MiniCache{T: 0.6, Start: 0.5}
		pairs := mc.Pairs(c.Layers)
		if len(pairs) == 0 {
			t.Fatalf("%s: no layer pairs", tc.dir)
		}
		full := f.base.StoredBytes()
		bb := f.base.Pool().BlockBytes()
		bt := f.base.Pool().Config().BlockTokens
		for _, r := range []float64{0.25, 0.5, 0.75} {
			p, err := New("minicache", r)
			if err != nil {
				t.Fatal(err)
			}
			seq := f.fork(t)
			if err := p.Apply(f.m, seq, nil); err != nil {
				t.Fatal(err)
			}
			merged := int(r * float64(tc.n))
			want := full
			for _, pr := range pairs {
				for g := range c.KVHeads {
					from, m, ok := seq.SharesFrom(pr[1], g)
					if !ok || from != pr[0] || m != tc.n {
						t.Fatalf("%s %.2f: layer %d head %d shares %d tokens of layer %d (%v)", tc.dir, r, pr[1], g, m, from, ok)
					}
					retained := int64(tc.n - merged)
					want += -int64((tc.n+bt-1)/bt)*bb + 8*int64(tc.n) + retained*int64(4+8*c.HeadDim)
				}
			}
			for l := range c.Layers {
				for g := range c.KVHeads {
					if seq.Len(l, g) != tc.n {
						t.Fatalf("%s %.2f: layer %d head %d holds %d tokens, want all %d", tc.dir, r, l, g, seq.Len(l, g), tc.n)
					}
				}
			}
			if got := seq.StoredBytes(); got != want {
				t.Errorf("%s %.2f: %d bytes stored, want %d (full %d)", tc.dir, r, got, want, full)
			}
			stored := seq.StoredBytes()
			cos := logitCos(f.decode(t, seq), f.ref)
			t.Logf("%s minicache %.2f: %d of %d bytes (%.1f %%), logit cosine to the full cache %.5f", tc.dir, r, stored, full, 100*float64(stored)/float64(full), cos)
			if cos < tc.minCos {
				t.Errorf("%s %.2f: logits far from the full cache's (cosine %.4f)", tc.dir, r, cos)
			}
		}
		p, err := Parse("minicache+kivi4", 0.5)
		if err != nil {
			t.Fatal(err)
		}
		seq := f.fork(t)
		if err := p.Compress(f.m, seq, nil); err != nil {
			t.Fatal(err)
		}
		stored := seq.StoredBytes()
		cos := logitCos(f.decode(t, seq), f.ref)
		t.Logf("%s minicache+kivi4 0.50: %d of %d bytes, logit cosine to the full cache %.5f", tc.dir, stored, full, cos)
		if cos < tc.minCos {
			t.Errorf("%s minicache+kivi4: logits far from the full cache's (cosine %.4f)", tc.dir, cos)
		}
	}
}
