package blend

import (
	"math"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

func TestWiden(t *testing.T) {
	tests := []struct {
		name   string
		score  []float32
		reused []bool
		w      int
		want   []float32
	}{
		{"window 0 keeps the scores", []float32{0, 3, 1}, []bool{true, true, true}, 0, []float32{0, 3, 1}},
		{"a peak spreads to its neighbours", []float32{0, 0, 5, 0, 0, 1}, []bool{true, true, true, true, true, true}, 1, []float32{0, 5, 5, 5, 1, 1}},
		{"window 2", []float32{0, 0, 0, 5, 0, 0, 0}, []bool{true, true, true, true, true, true, true}, 2, []float32{0, 5, 5, 5, 5, 5, 0}},
		{"not across fresh tokens, which score 0", []float32{0, 4, 9, 0}, []bool{true, true, false, true}, 1, []float32{4, 4, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := widen(tc.score, tc.reused, tc.w); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRankByAttention(t *testing.T) {
	tests := []struct {
		name   string
		sums   [][]float32
		reused []bool
		want   []float32
	}{
		{"one head, normalized over reused tokens",
			[][]float32{{6, 1, 3, 0}}, []bool{false, true, true, true}, []float32{0, 0.25, 0.75, 0}},
		{"the largest share over heads, not the sum",
			[][]float32{{0, 1, 1}, {0, 0, 4}}, []bool{false, true, true}, []float32{0, 0.5, 1}},
		{"a head that reads only fresh tokens adds nothing",
			[][]float32{{5, 0, 0}, {0, 2, 2}}, []bool{false, true, true}, []float32{0, 0.5, 0.5}},
		{"layers without queries are skipped",
			[][]float32{nil, {0, 3, 1}}, []bool{false, true, true}, []float32{0, 0.75, 0.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rankByAttention(tc.sums, tc.reused)
			if maxDiff(got, tc.want) > 1e-6 {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAttentionSums checks the question's attention against the model's
// own attention statistics (Observer.Attention, computed inside the
// forward pass): summed over a KV head's query heads they are equal.
func TestAttentionSums(t *testing.T) {
	m := loadTiny(t)
	tokens := ids(7, 120)
	for _, tail := range []int{1, 9, 30} {
		cache := m.NewCache()
		if _, err := m.Forward(cache, tokens[:len(tokens)-tail], model.NoLogits); err != nil {
			t.Fatal(err)
		}
		obs := &model.Observer{From: len(tokens) - tail, Attention: true}
		if _, err := m.ForwardObserved(cache, tokens[len(tokens)-tail:], model.NoLogits, obs); err != nil {
			t.Fatal(err)
		}
		sums := attentionSums(m, cache, obs)
		group := m.Config.Heads / m.Config.KVHeads
		for l := range m.Config.Layers {
			for g := range m.Config.KVHeads {
				for j := range tokens {
					var got float32
					for h := g * group; h < (g+1)*group; h++ {
						got += sums[l*m.Config.Heads+h][j]
					}
					if want := obs.AttnSum[l][g][j]; math.Abs(float64(got-want)) > 1e-4 {
						t.Fatalf("tail %d, layer %d, KV head %d, token %d: attention %g, the model's %g", tail, l, g, j, got, want)
					}
				}
			}
		}
		cache.Release()
	}
}

// TestCandidates checks the question pass's choice: the share asked for,
// only tokens of moved documents, every token outside documents, ascending.
func TestCandidates(t *testing.T) {
	m := loadTiny(t)
	b := newBlender(m)
	d1, d2, d3 := ids(3, 70), ids(4, 50), ids(5, 60)
	p := prompt(d1, d2, d3)
	tests := []struct {
		name string
		c    CacheBlend
	}{
		{"default", CacheBlend{}},
		{"no neighbours", CacheBlend{Window: -1}},
		{"wide, question through every layer", CacheBlend{Ratio: 0.3, Widen: 2, QuestionLayers: 8}},
		{"everything", CacheBlend{Ratio: 1, Widen: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.c.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			a, err := b.assemble("", p, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.release()
			got, err := c.candidates(b, a)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
				t.Fatalf("candidates not ascending and distinct: %v", got)
			}
			moved := 0
			for _, d := range a.docs {
				if !d.atHome {
					moved += d.end - d.start
				}
			}
			want := min(moved, int(math.Ceil(c.Widen*c.Ratio*float64(a.placed))))
			var docTokens int
			for _, j := range got {
				if a.isFresh(j) {
					continue
				}
				docTokens++
				if j < a.docs[1].start { // the first document sits where it was cached
					t.Fatalf("candidate %d in the document at home (ends at %d)", j, a.docs[0].end)
				}
			}
			if docTokens != want {
				t.Errorf("%d document tokens chosen, want %d", docTokens, want)
			}
			for _, j := range a.fresh {
				if _, ok := slices.BinarySearch(got, j); !ok {
					t.Errorf("token %d outside documents is not computed", j)
				}
			}
		})
	}
}

func TestParseCacheBlend(t *testing.T) {
	tests := []struct {
		name, want string
		ratio      float64
		sel        string
	}{
		{"cacheblend", "cacheblend", 0.2, ""},
		{"cacheblend-deviation", "cacheblend-deviation", 0.3, SelectDeviation},
	}
	for _, tc := range tests {
		m, err := Parse(tc.name, tc.ratio)
		if err != nil {
			t.Fatal(err)
		}
		c := m.(CacheBlend)
		if m.Name() != tc.want || c.Ratio != tc.ratio || c.Select != tc.sel {
			t.Errorf("Parse(%q): %+v named %q", tc.name, c, m.Name())
		}
	}
	b := newBlender(loadTiny(t))
	if _, err := (CacheBlend{Select: "oracle"}).Prefill(b, "", prompt(ids(3, 20))); err == nil {
		t.Error("unknown selector: no error")
	}
}
