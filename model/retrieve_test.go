package model

import (
	"slices"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

// listRetriever selects, in every layer and head, the tokens whose
// positions keep accepts; it counts its calls.
type listRetriever struct {
	keep     func(pos, n int) bool
	prepared int
	sel      [][]int
}

func (r *listRetriever) Prepare(cache *kvcache.Seq, tokens []int) error {
	r.prepared++
	if r.sel == nil {
		r.sel = make([][]int, cache.Layers()*cache.KVHeads())
	}
	return nil
}

func (r *listRetriever) Select(layer, head int, kv kvcache.View, q []float32, pos int) []int {
	i := layer*2 + head
	r.sel[i] = r.sel[i][:0]
	for j := range kv.Len() {
		if r.keep(kv.Pos(j), kv.Len()) {
			r.sel[i] = append(r.sel[i], j)
		}
	}
	return r.sel[i]
}

// TestForwardRetrieve checks the retrieval seam on tinychat: a decode step
// that selects every token gives the logits of full attention; one that
// selects some gives the logits of a cache that holds only those (evicted
// for real with Keep); prefill passes attend to everything.
func TestForwardRetrieve(t *testing.T) {
	m := loadDir(t, "../models/tinychat")
	var golden []struct {
		InputIDs []int `json:"input_ids"`
	}
	readJSON(t, "testdata/tinychat/golden.json", &golden)
	ids := golden[0].InputIDs
	for len(ids) < 150 {
		ids = append(ids, ids...)
	}
	ids = ids[:150]
	prompt, next := ids[:149], ids[149:]
	for _, format := range []kvcache.Format{kvcache.F32, kvcache.BF16} {
		pool := m.NewPool(0, format)
		base := pool.NewSeq()
		if _, err := m.Forward(base, prompt, NoLogits); err != nil {
			t.Fatal(err)
		}
		full := forkForward(t, m, base, next, nil)

		all := &listRetriever{keep: func(int, int) bool { return true }}
		if got := forkForward(t, m, base, next, all); maxAbsDiff(got, full) > 1e-4 {
			t.Errorf("%s: selecting every token: logits differ from full attention by %g", format, maxAbsDiff(got, full))
		}
		if all.prepared != 1 {
			t.Errorf("Prepare called %d times for one pass", all.prepared)
		}

		some := func(p, n int) bool { return p < 4 || p%3 == 0 || p >= n-8 }
		kept, err := base.Fork(base.Next())
		if err != nil {
			t.Fatal(err)
		}
		for l := range m.Config.Layers {
			for g := range m.Config.KVHeads {
				var idx []int
				for j := range kept.Len(l, g) {
					if some(j, len(prompt)+1) {
						idx = append(idx, j)
					}
				}
				if err := kept.Keep(l, g, idx); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := forkForward(t, m, kept, next, nil)
		kept.Release()
		if got := forkForward(t, m, base, next, &listRetriever{keep: some}); maxAbsDiff(got, want) > 1e-4 {
			t.Errorf("%s: selecting some tokens: logits differ from a cache holding only them by %g", format, maxAbsDiff(got, want))
		}
		if maxAbsDiff(want, full) < 1e-3 {
			t.Errorf("%s: the selection changed nothing; the test would not see a broken seam", format)
		}

		// A prefill pass ignores the selection.
		plain := pool.NewSeq()
		wantPrefill, err := m.Forward(plain, ids, LastLogits)
		if err != nil {
			t.Fatal(err)
		}
		wantPrefill = slices.Clone(wantPrefill)
		plain.Release()
		c := pool.NewSeq()
		none := &listRetriever{keep: func(int, int) bool { return false }}
		got, err := m.ForwardRetrieve(c, ids, LastLogits, none)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got, wantPrefill); d != 0 {
			t.Errorf("%s: prefill through a retriever differs from full attention by %g", format, d)
		}
		c.Release()
		base.Release()
	}
}

// forkForward runs tokens on a fork of base (through r when set) and
// returns the last logits.
func forkForward(t *testing.T, m *Model, base *kvcache.Seq, tokens []int, r Retriever) []float32 {
	t.Helper()
	c, err := base.Fork(base.Next())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	l, err := m.ForwardRetrieve(c, tokens, LastLogits, r)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(l)
}
