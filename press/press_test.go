package press

import (
	"math"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/internal/fuzzguard"
	"github.com/kvserve/kvserve/model"
)

// handState builds a one-layer state of 2 KV heads × 2 query heads each,
// head_dim 4, n tokens with the given keys (the same for both KV heads) and
// values of norm 1 unless set.
func handState(keys [][]float32) *State {
	n, d := len(keys), 4
	s := &State{Layer: 0, Layers: 1, Heads: 4, KVHeads: 2, HeadDim: d, AttnScale: 0.5,
		Keys: make([][]float32, 2), Values: make([][]float32, 2), Positions: make([][]int, 2),
		InvFreq: []float32{1, 0.01}}
	for g := range 2 {
		for j := range n {
			s.Keys[g] = append(s.Keys[g], keys[j]...)
			s.Values[g] = append(s.Values[g], 1, 0, 0, 0)
			s.Positions[g] = append(s.Positions[g], j)
		}
	}
	return s
}

// kept runs a press's scorer and budget on a state and returns head 0's
// kept token indices.
func kept(t *testing.T, name string, s *State, ratio float64) []int {
	t.Helper()
	p, err := New(name, ratio)
	if err != nil {
		t.Fatal(err)
	}
	scores := p.Scorer.Score(s)
	if len(scores) != s.KVHeads || len(scores[0]) != s.Tokens(0) {
		t.Fatalf("%s: scores shaped %d×%d", name, len(scores), len(scores[0]))
	}
	return p.Budget.Select(scores, s.Layer, s.Layers, ratio)[0]
}

// withQueries records the given post-RoPE (and pre-RoPE) queries, one per
// window token, the same for all four query heads.
func withQueries(s *State, qs ...[]float32) *State {
	s.Obs = &model.Observer{Queries: make([][]float32, 1), QueriesPre: make([][]float32, 1)}
	for _, q := range qs {
		for range s.Heads {
			s.Obs.Queries[0] = append(s.Obs.Queries[0], q...)
			s.Obs.QueriesPre[0] = append(s.Obs.QueriesPre[0], q...)
		}
	}
	return s
}

func TestMethodsKeep(t *testing.T) {
	e := func(i int, v float32) []float32 { k := make([]float32, 4); k[i] = v; return k }
	eight := [][]float32{e(0, 1), e(1, 1), e(0, 5), e(2, 1), e(0, 1), e(3, 1), e(0, 2), e(1, 1)}
	cases := []struct {
		name  string
		state func() *State
		ratio float64
		want  []int
	}{
		// Sinks (4) and the most recent tokens; the ones after the sinks go.
		{"streaming_llm", func() *State { return handState(eight) }, 0.25, []int{0, 1, 2, 3, 6, 7}},
		// Smallest key norms: the norm-5 and norm-2 keys go.
		{"knorm", func() *State { return handState(eight) }, 0.25, []int{0, 1, 3, 4, 5, 7}},
		// Keys along e0 dominate the mean direction: the distinct ones stay.
		{"keydiff", func() *State { return handState(eight) }, 0.5, []int{1, 3, 5, 7}},
		// The last token asks for e2: token 3 wins, the last token is kept.
		{"tova", func() *State { return withQueries(handState(eight), e(2, 20)) }, 0.75, []int{3, 7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := kept(t, tc.name, tc.state(), tc.ratio); !slices.Equal(got, tc.want) {
				t.Errorf("kept %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSnapKVKeepsWindowAndTarget(t *testing.T) {
	// 12 tokens; a window of 2 queries both looking for the e3 key at 5.
	keys := make([][]float32, 12)
	for j := range keys {
		keys[j] = []float32{0.1, 0.1, 0, 0}
	}
	keys[5] = []float32{0, 0, 0, 1}
	s := withQueries(handState(keys), []float32{0, 0, 0, 30}, []float32{0, 0, 0, 30})
	p := &Press{Name: "snapkv", Scorer: SnapKV{Window: 2, Kernel: 1}, Budget: Uniform{}, Ratio: 0.75}
	keep := p.Budget.Select(p.Scorer.Score(s), 0, 1, p.Ratio)[0]
	if !slices.Equal(keep, []int{5, 10, 11}) {
		t.Errorf("kept %v, want the target and the window [5 10 11]", keep)
	}
	// Pooling spreads the target's score to its neighbours.
	pooled := avgPool([]float32{0, 0, 5, 0, 0}, 3)
	if pooled[1] == 0 || pooled[3] == 0 || pooled[0] != 0 {
		t.Errorf("avgPool %v", pooled)
	}
}

func TestObservedAttention(t *testing.T) {
	s := handState(make([][]float32, 4))
	// Sums over 2 query heads: token 3 is seen by one query, token 0 by four.
	s.Obs = &model.Observer{AttnSum: [][][]float32{{{4, 1, 1, 1.8}, {4, 1, 1, 1.8}}}}
	got := ObservedAttention{}.Score(s)[0]
	want := []float32{0.5, 1.0 / 6, 0.25, 0.9}
	for j := range want {
		if math.Abs(float64(got[j]-want[j])) > 1e-6 {
			t.Fatalf("scores %v, want %v", got, want)
		}
	}
}

func TestExpectedAttention(t *testing.T) {
	// Queries all point along e1 (pre-RoPE, frequencies near 0 in dims
	// 1/3 so the average rotation barely moves them): the key along e1
	// is expected to be read, the one against it is not.
	keys := [][]float32{{1, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 3, 0, 0}, {0, -3, 0, 0}, {0, 0, 0, 0.1}}
	qs := make([][]float32, 8)
	for i := range qs {
		qs[i] = []float32{0, 4 + float32(i%2), 0, 0}
	}
	s := withQueries(handState(keys), qs...)
	s.InvFreq = []float32{1, 1e-6}
	sc := ExpectedAttention{Future: 16, Sink: 4}.Score(s)[0]
	if !(sc[5] > sc[7] && sc[7] > sc[6]) {
		t.Errorf("scores %v: want token 5 > 7 > 6", sc)
	}
	for j := range 4 {
		if sc[j] < sc[5] {
			t.Errorf("sink %d scored %g below the best %g", j, sc[j], sc[5])
		}
	}
}

// TestPyramidKVBudgets checks the registered pyramidkv (window 64, β 20)
// against kvpress's get_layer_budget worked by hand for the lengths of
// dev.jsonl over tinychat's 8 layers. For n = 1000, ratio 0.5: B = 500,
// B/β = 25 and 2B − 25 = 975 ≥ n − 64 = 936, so the bottom layer keeps 936
// and the top 2·500 − 936 = 64 (≥ 64: the schedule fits), step 872/7 =
// 124.57: 936, 811.4, 686.9, 562.3, 437.7, 313.1, 188.6, 64. For n = 3500,
// ratio 0.5: 2·1750 − 87.5 = 3412.5 < 3436, no clamp: 3412.5 → 87.5, step
// 475, rounded half to even. At 0.75 the top budget (B/β or 2B − (n − 64))
// falls below 64 and every layer keeps B, as SnapKV.
func TestPyramidKVBudgets(t *testing.T) {
	p, err := New("pyramidkv", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	pk := p.Budget.(PyramidKV)
	for _, tc := range []struct {
		n     int
		ratio float64
		want  []int
	}{
		{1000, 0.5, []int{936, 811, 687, 562, 438, 313, 189, 64}},
		{1000, 0.25, []int{936, 883, 830, 777, 723, 670, 617, 564}},
		{2000, 0.5, []int{1936, 1669, 1401, 1134, 866, 599, 331, 64}},
		{3500, 0.5, []int{3412, 2938, 2462, 1988, 1512, 1038, 562, 88}},
		{3500, 0.25, []int{3436, 3204, 2973, 2741, 2509, 2277, 2046, 1814}},
		{1000, 0.75, []int{250, 250, 250, 250, 250, 250, 250, 250}},
		{3500, 0.75, []int{875, 875, 875, 875, 875, 875, 875, 875}},
	} {
		scores := [][]float32{make([]float32, tc.n), make([]float32, tc.n)}
		var got []int
		for l := range 8 {
			keep := pk.Select(scores, l, 8, tc.ratio)
			if len(keep[0]) != len(keep[1]) {
				t.Errorf("heads of one layer kept %d and %d", len(keep[0]), len(keep[1]))
			}
			got = append(got, len(keep[0]))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("n = %d, ratio %v: budgets %v, want %v", tc.n, tc.ratio, got, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := New("nope", 0.5); err == nil {
		t.Error("unknown press accepted")
	}
	for _, n := range Names() {
		if _, err := New(n, 0.5); err != nil {
			t.Error(err)
		}
	}
}

// FuzzParse feeds Parse arbitrary press names and ratios: it returns a
// press or an error, never panics, and a press it returns carries a
// ratio in [0, 1).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"keydiff", "keydiff+kivi4", "kivi4r32", "snapkv+think", "a+b+c", "+", "", "gear3r32", "threshold_keydiff"} {
		f.Add(s, 0.5)
	}
	f.Fuzz(func(t *testing.T, name string, ratio float64) {
		defer fuzzguard.Start(t, len(name))()
		p, err := Parse(name, ratio)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse(%q, %v) returned a press and an error", name, ratio)
			}
			return
		}
		if p == nil || p.Scorer == nil || p.Budget == nil || !(p.Ratio >= 0 && p.Ratio < 1) {
			t.Fatalf("Parse(%q, %v) = %+v", name, ratio, p)
		}
	})
}
