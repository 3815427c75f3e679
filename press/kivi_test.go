package press

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		ratio   float64
		ratioIs float64
		quant   bool
	}{
		{"keydiff", 0.5, 0.5, false},
		{"kivi4", 0.5, 0, true}, // quantization ignores the ratio
		{"kivi2", 0, 0, true},
		{"kivi8", 0.75, 0, true},
		{"keydiff+kivi4", 0.5, 0.5, true},
		{"snapkv+kivi2", 0.25, 0.25, true},
		{"keydiff+kivi4", 0, 0, true},
	}
	for _, tc := range cases {
		p, err := Parse(tc.name, tc.ratio)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if p.Name != tc.name || p.Ratio != tc.ratioIs || (p.Quantizer() != nil) != tc.quant {
			t.Errorf("%s@%v: name %s ratio %v quantizer %v", tc.name, tc.ratio, p.Name, p.Ratio, p.Quantizer())
		}
	}
	// A composition scores and observes as its eviction method does.
	p, _ := Parse("snapkv+kivi4", 0.5)
	if p.Scorer.Needs() != (SnapKV{}).Needs() && p.Scorer.Needs().Window == 0 {
		t.Errorf("snapkv+kivi4 needs %+v", p.Scorer.Needs())
	}
	for _, bad := range []string{"kivi4+keydiff", "keydiff+snapkv", "keydiff+kivi4+kivi2", "kivi5", "keydiff+"} {
		if _, err := Parse(bad, 0.5); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := Parse("kivi4", 1); err == nil {
		t.Error("ratio 1 accepted")
	}
}

// TestKIVIPressNeverEvicts: a kivi press run through Apply at a ratio
// keeps every token; New does not know it, so callers that only Apply
// cannot mistake it for an eviction method.
func TestKIVIPressNeverEvicts(t *testing.T) {
	p, err := Parse("kivi4", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	p.Ratio = 0.5
	s := handState(make([][]float32, 6))
	keep := p.Budget.Select(p.Scorer.Score(s), 0, 1, p.Ratio)
	if !slices.Equal(keep[0], []int{0, 1, 2, 3, 4, 5}) || !slices.Equal(keep[1], keep[0]) {
		t.Errorf("kept %v", keep)
	}
	if _, err := New("kivi4", 0.5); err == nil {
		t.Error("New built a quantization press")
	}
	for _, name := range []string{"kivi2", "kivi3", "kivi4", "kivi8"} {
		if !slices.Contains(QuantNames(), name) {
			t.Errorf("QuantNames %v lacks %s", QuantNames(), name)
		}
	}
}

// TestCompressQuantizes runs a kivi press on a hand-filled sequence: the
// blocks older than the residual are sealed, the bytes fall by the
// format's measure, and the residual stays exact.
func TestCompressQuantizes(t *testing.T) {
	pool := kvcache.NewPool(kvcache.PoolConfig{Layers: 2, KVHeads: 2, HeadDim: 64, Format: kvcache.BF16})
	seq := pool.NewSeq()
	defer seq.Release()
	r := rand.New(rand.NewPCG(1, 2))
	k, v := make([]float32, 64), make([]float32, 64)
	const n = 300 // 9 full blocks + 12 tokens
	for pos := range n {
		for l := range 2 {
			for g := range 2 {
				for i := range k {
					k[i], v[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
				}
				seq.Append(l, g, k, v, pos)
			}
		}
	}
	seq.Advance(n)
	before := seq.StoredBytes()
	p, err := Parse("kivi2", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Compress(nil, seq, nil); err != nil { // ratio 0: no model needed
		t.Fatal(err)
	}
	// (300 − 128)/32 = 5 blocks sealed per head, 5 left in bf16.
	cfg := pool.Config()
	want := 4 * (5*kvcache.QuantBlockBytes(cfg, kvcache.Int2) + 5*pool.BlockBytes())
	if got := seq.StoredBytes(); got != want || got >= before {
		t.Fatalf("stored %d bytes (before %d), want %d", got, before, want)
	}
	view := seq.View(1, 0)
	if view.Len() != n || view.Format(159) != kvcache.Int2 || view.Format(160) != kvcache.BF16 {
		t.Fatalf("%d tokens; token 159 %s, 160 %s", view.Len(), view.Format(159), view.Format(160))
	}
}
