package press

import (
	"testing"

	"github.com/kvserve/kvserve/model"
)

// TestNewMethodsOnAModel prefills a tiny llama fixture with what the
// presses need, compresses a fork with each, and checks the counts each
// head keeps, that memory was given back, and that the cache still decodes.
func TestNewMethodsOnAModel(t *testing.T) {
	const n = 300
	m, tokens := loadFixture(t, llamaFixture, n)
	c := m.Config
	names := []string{"adakv_snapkv", "adakv_keydiff", "adakv_expected_attention", "adakv_keydiff_sinks",
		"chunkkv", "chunkkv_snapkv", "cake", "cake_keydiff", "cake_adakv_keydiff_sinks", "lacache", "guikv", "keydiff_sinks"}
	ratios := []float64{0.5, 0.75}
	var presses []*Press
	for _, name := range names {
		for _, r := range ratios {
			p, err := New(name, r)
			if err != nil {
				t.Fatal(err)
			}
			presses = append(presses, p)
		}
	}
	base := m.NewCache()
	defer base.Release()
	obs := Observer(presses, 0, n)
	if _, err := m.ForwardObserved(base, tokens, model.NoLogits, obs); err != nil {
		t.Fatal(err)
	}
	full := base.Bytes()
	for _, p := range presses {
		seq, err := base.Fork(n)
		if err != nil {
			t.Fatal(err)
		}
		if pl, ok := p.Budget.(LayerPlanner); ok {
			err = p.applyPlanned(m, seq, obs, pl)
		} else {
			err = p.Apply(m, seq, obs)
		}
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		k := int(float64(n) * (1 - p.Ratio))
		all := 0
		for l := range c.Layers {
			total := 0
			for g := range c.KVHeads {
				got := seq.Len(l, g)
				total += got
				all += got
				_, headWise := p.Budget.(AdaKV)
				_, layerWise := p.Budget.(CAKE)
				if !headWise && !layerWise && (got > k || got < k-20) {
					t.Errorf("%s %.2f: layer %d head %d keeps %d, want %d", p.Name, p.Ratio, l, g, got, k)
				}
				v := seq.View(l, g)
				for j := 1; j < v.Len(); j++ {
					if v.Pos(j) <= v.Pos(j-1) {
						t.Fatalf("%s: layer %d head %d positions out of order", p.Name, l, g)
					}
				}
			}
			if _, layerWise := p.Budget.(CAKE); !layerWise && total > k*c.KVHeads {
				t.Errorf("%s %.2f: layer %d keeps %d, over the %d of a uniform budget", p.Name, p.Ratio, l, total, k*c.KVHeads)
			}
		}
		if all > k*c.KVHeads*c.Layers {
			t.Errorf("%s %.2f: keeps %d tokens in all, over the %d of a uniform budget", p.Name, p.Ratio, all, k*c.KVHeads*c.Layers)
		}
		per := []int{}
		for l := range c.Layers {
			for g := range c.KVHeads {
				per = append(per, seq.Len(l, g))
			}
		}
		t.Logf("%s %.2f: %d tokens kept in all (%v), %d bytes of %d", p.Name, p.Ratio, all, per, seq.Bytes(), full)
		blocks := int64(c.Layers*c.KVHeads) * seq.Pool().BlockBytes()
		if got := seq.Bytes(); float64(got) > (1-p.Ratio)*float64(full)+float64(blocks) {
			t.Errorf("%s %.2f: %d bytes of %d full", p.Name, p.Ratio, got, full)
		}
		if _, err := m.Forward(seq, []int{5}, model.LastLogits); err != nil {
			t.Errorf("%s: decoding after compression: %v", p.Name, err)
		}
		seq.Release()
	}
}
