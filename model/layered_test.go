package model

import (
	"errors"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

// TestForwardLayered: a layer-by-layer pass, after a plain one on the same
// cache, fills the cache, records the observations and returns the logits
// that the plain pass does, bit for bit, and calls done once per layer with
// that layer complete and the next not begun. (The fixtures' 512 positions
// hold one chunk; bench's tests run tinychat's longer prompts through it.)
func TestForwardLayered(t *testing.T) {
	m := loadDir(t, "testdata/archs/qwen3")
	c := m.Config
	n, pre := c.MaxPositions-1, 100
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 3 + (i*37)%(c.VocabSize-3)
	}
	ref, lay := m.NewCache(), m.NewCache()
	refObs := &Observer{From: n - 8, PreRope: true, Attention: true}
	layObs := &Observer{From: n - 8, PreRope: true, Attention: true}
	for _, s := range []*kvcache.Seq{ref, lay} {
		if _, err := m.Forward(s, ids[:pre], NoLogits); err != nil {
			t.Fatal(err)
		}
	}
	want, err := m.ForwardObserved(ref, ids[pre:], LastLogits, refObs)
	if err != nil {
		t.Fatal(err)
	}
	want = slices.Clone(want)
	var order []int
	got, err := m.ForwardLayered(lay, ids[pre:], LastLogits, layObs, func(l int) error {
		order = append(order, l)
		if lay.Len(l, 0) != n || (l+1 < c.Layers && lay.Len(l+1, 0) != pre) {
			t.Errorf("done(%d): layer holds %d, next %d", l, lay.Len(l, 0), lay.Len(min(l+1, c.Layers-1), 0))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("logits differ by up to %g", maxAbsDiff(got, want))
	}
	if len(order) != c.Layers || lay.Next() != n {
		t.Errorf("done ran for %v, next position %d", order, lay.Next())
	}
	kr, kl := make([]float32, c.HeadDim), make([]float32, c.HeadDim)
	for l := range c.Layers {
		if !slices.Equal(refObs.Queries[l], layObs.Queries[l]) || !slices.Equal(refObs.QueriesPre[l], layObs.QueriesPre[l]) {
			t.Errorf("layer %d: observed queries differ", l)
		}
		for g := range c.KVHeads {
			if !slices.Equal(refObs.AttnSum[l][g], layObs.AttnSum[l][g]) {
				t.Errorf("layer %d head %d: attention sums differ", l, g)
			}
			for _, j := range []int{0, pre, n - 1} {
				ref.View(l, g).Key(j, kr)
				lay.View(l, g).Key(j, kl)
				if !slices.Equal(kr, kl) {
					t.Errorf("layer %d head %d token %d: keys differ", l, g, j)
				}
			}
		}
	}
	stop := errors.New("stop")
	if _, err := m.ForwardLayered(m.NewCache(), ids, NoLogits, nil, func(int) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("done's error: %v", err)
	}
}

// TestForwardLayeredBudget: a pool that holds one and a half layers of a
// prompt (the fixture has two) refuses the prompt computed whole, but takes it layer by layer when each
// finished layer is cut down before the next.
func TestForwardLayeredBudget(t *testing.T) {
	m := loadDir(t, "testdata/archs/qwen3")
	c := m.Config
	const n = 300
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 3 + (i*37)%(c.VocabSize-3)
	}
	probe := m.NewPool(0, kvcache.F32)
	layer := int64((n+31)/32*c.KVHeads) * probe.BlockBytes()
	budget := layer + layer/2
	pool := m.NewPool(budget, kvcache.F32)
	whole := pool.NewSeq()
	if _, err := m.Forward(whole, ids, NoLogits); !errors.Is(err, kvcache.ErrBudget) {
		t.Fatalf("whole prompt over the budget: %v, want ErrBudget", err)
	}
	whole.Release()
	seq := pool.NewSeq()
	defer seq.Release()
	_, err := m.ForwardLayered(seq, ids, LastLogits, nil, func(l int) error {
		for g := range c.KVHeads {
			if err := seq.Keep(l, g, []int{0, 1, 2, n - 1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("layer by layer: %v", err)
	}
	if pool.PeakBytes() > budget {
		t.Errorf("peak %d bytes over the budget %d", pool.PeakBytes(), budget)
	}
	// Without compression the second layer does not fit.
	again := pool.NewSeq()
	defer again.Release()
	if _, err := m.ForwardLayered(again, ids, NoLogits, nil, nil); !errors.Is(err, kvcache.ErrBudget) {
		t.Errorf("uncompressed layer-by-layer pass: %v, want ErrBudget", err)
	}
}
