package press

import (
	"math"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

// kvmState is one head of eight 2-d keys (values: token i holds (i, −i)):
//
//	t0 (1, 0)      sink
//	t1 (0, 1)   ┐
//	t2 (0, 1.1) │ a run: cos 1 and 0.995
//	t3 (0.1, 1) ┘
//	t4 (1, 0)      cos 0.0995 with t3, −1 with t5
//	t5 (−1, 0)  ┐ a run: cos 0.9988
//	t6 (−1, 0.05)┘
//	t7 (1, 1)      recent
func kvmState() *State {
	keys := []float32{1, 0, 0, 1, 0, 1.1, 0.1, 1, 1, 0, -1, 0, -1, 0.05, 1, 1}
	vals := make([]float32, 16)
	for i := range 8 {
		vals[2*i], vals[2*i+1] = float32(i), -float32(i)
	}
	return &State{Heads: 1, KVHeads: 1, HeadDim: 2, Layers: 1,
		Keys: [][]float32{keys}, Values: [][]float32{vals}, Positions: [][]int{span(0, 8)}}
}

func closeTo(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			return false
		}
	}
	return true
}

func TestKVMergerRuns(t *testing.T) {
	s := kvmState()
	score := []float32{0, 1, 5, 2, 0.5, 1, 3, 0} // pivots: t2 in t1–t3, t6 in t5–t6
	b := KVMerger{Sink: 1, Recent: 1}
	// 8 → 5 entries: the three most similar links join t1–t3 and t5–t6.
	r := b.merge(s, 0, score, 5)
	if !slices.Equal(r.keep, []int{0, 2, 4, 6, 7}) {
		t.Fatalf("kept %v, want [0 2 4 6 7]", r.keep)
	}
	for _, i := range []int{0, 2, 4} {
		if r.keys[i] != nil || r.values[i] != nil {
			t.Errorf("entry %d (a set of one) changed", i)
		}
	}
	// t5–t6 around pivot t6: σ² = ‖k5 − k6‖² = 0.0025, so w5 = e^−½, w6 = 1.
	w5 := float32(math.Exp(-0.5))
	if want := []float32{(-w5 - 1) / (1 + w5), 0.05 / (1 + w5)}; !closeTo(r.keys[3], want) {
		t.Errorf("t5–t6 key %v, want %v", r.keys[3], want)
	}
	if want := []float32{(5*w5 + 6) / (1 + w5), -(5*w5 + 6) / (1 + w5)}; !closeTo(r.values[3], want) {
		t.Errorf("t5–t6 value %v, want %v", r.values[3], want)
	}
	// t1–t3 around t2: squared distances 0.01 and 0.02, σ² = 0.015.
	w1, w3 := math.Exp(-0.01/0.03), math.Exp(-0.02/0.03)
	z := 1 + w1 + w3
	if want := []float32{float32(0.1 * w3 / z), float32((w1 + 1.1 + w3) / z)}; !closeTo(r.keys[1], want) {
		t.Errorf("t1–t3 key %v, want %v", r.keys[1], want)
	}
	if want := float32((w1 + 2 + 3*w3) / z); !closeTo(r.values[1][:1], []float32{want}) {
		t.Errorf("t1–t3 value %v, want %v", r.values[1][0], want)
	}
	// Only links of similarity ≥ 0.5 may join (three); the fourth entry to
	// go is the lowest-scored set, t4 alone.
	b.MinSimilarity = 0.5
	if r := b.merge(s, 0, score, 4); !slices.Equal(r.keep, []int{0, 2, 6, 7}) {
		t.Errorf("kept %v, want [0 2 6 7]", r.keep)
	}
	// Nothing to remove: unchanged.
	if r := b.merge(s, 0, score, 8); len(r.keep) != 8 || r.keys != nil {
		t.Errorf("no compression changed %+v", r)
	}
}

func TestD2OLayerBudget(t *testing.T) {
	b := D2O{Sink: 4, Recent: 32}
	for _, tc := range []struct {
		cv      []float64
		n, kept int
		want    int
		why     string
	}{
		{[]float64{0}, 100, 0, 50, "first of 3 layers: a third of 150"},
		// w = ½ against a mean of ¾ for the one layer to come: 100·½/1¼.
		{[]float64{0, 1}, 100, 50, 40, "a sparser second layer gets less"},
		{[]float64{0, 1, 3}, 100, 90, 60, "the last layer takes the rest"},
		{[]float64{0, 1, 3}, 100, 140, 36, "but never under Sink + Recent"},
		{[]float64{0, 0, 0}, 100, 0, 100, "nor over its length"},
	} {
		if got := b.LayerBudget(tc.cv, tc.n, tc.kept, 3, 0.5); got != tc.want {
			t.Errorf("%s: budget %d, want %d", tc.why, got, tc.want)
		}
	}
	if v := variation([]float32{4, 3, 2, 1}, 4); v != 0 {
		t.Errorf("even attention (1 per query) has variation %v", v)
	}
	if v := variation([]float32{8, 0, 0, 0}, 4); math.Abs(v-math.Sqrt(3)) > 1e-9 {
		t.Errorf("one heavy hitter: variation %v, want √3", v)
	}
}

func TestD2OMergeEMA(t *testing.T) {
	// mergeState's keys: kept t0 (1, 0) and t1 (0, 1); evicted t2 (s 0.994
	// → t0), t3 (s 0), t4 (s 0.8 → t1), t5 (s 0.371 → t1). τ starts at the
	// mean 0.541: t2 merges (τ → 0.586), t3 not (τ → 0.528), t4 merges
	// (τ → 0.555), t5 not.
	s := mergeState()
	r := D2O{Beta: 0.9}.merge(s, 0, []int{0, 1})
	s2 := 0.9 / math.Sqrt(0.82)
	z0 := math.E + math.Exp(s2)
	wantK0 := []float32{float32((math.E + 0.9*math.Exp(s2)) / z0), float32(0.1 * math.Exp(s2) / z0)}
	if !closeTo(r.keys[0], wantK0) {
		t.Errorf("t0's key %v, want %v", r.keys[0], wantK0)
	}
	z1 := math.E + math.Exp(0.8)
	wantV1 := []float32{float32((2*math.E + 0) / z1), float32((2*math.E + 10*math.Exp(0.8)) / z1)}
	if !closeTo(r.values[1], wantV1) {
		t.Errorf("t1's value %v, want %v (t4 merged, t5 not)", r.values[1], wantV1)
	}
}

func TestCaMMerge(t *testing.T) {
	s := mgHead(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // values i·(1, 1)
	s.Obs = &model.Observer{AttnSum: [][][]float32{{{1, 10, 2, 0, 2, 1}}}}
	c := CaM{MergeBudget: 2, Seed: 1}
	// Means over two heads: tokens 1 and 3 lowest.
	keep := c.Select([][]float32{{5, 0, 5, 1, 5, 5}, {5, 1, 5, 0, 5, 5}}, 0, 1, 1.0/3)
	if !slices.Equal(keep[0], []int{0, 2, 4, 5}) || !slices.Equal(keep[1], keep[0]) {
		t.Fatalf("kept %v", keep)
	}
	// Token 1 (A 10 ≥ the mean 2 of t2, t4) always merges, half into each;
	// token 3 (A 0) never does; t0 and t5 are untouched.
	v := c.Merge(s, 0, keep[0])
	want := [][]float32{nil, {2.5, 2.5}, {4.5, 4.5}, nil}
	for i := range want {
		if (want[i] == nil) != (v[i] == nil) || (want[i] != nil && !closeTo(v[i], want[i])) {
			t.Errorf("kept %d: value %v, want %v", keep[0][i], v[i], want[i])
		}
	}
}

// TestNewMergesOnAModel runs kvmerger, d2o and cam on the tiny llama: the
// cache shrinks to about 1 − ratio, keys change only where kvmerger and d2o
// merge, and the compressed cache decodes.
func TestNewMergesOnAModel(t *testing.T) {
	const n = 200
	m, tokens := loadFixture(t, llamaFixture, n)
	c := m.Config
	for _, name := range []string{"kvmerger", "d2o", "cam"} {
		p, err := New(name, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		seq := m.NewCache()
		obs := Observer([]*Press{p}, 0, n)
		if _, err := m.ForwardObserved(seq, tokens, model.NoLogits, obs); err != nil {
			t.Fatal(err)
		}
		if err := p.Apply(m, seq, obs); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		total := 0
		for l := range c.Layers {
			for g := range c.KVHeads {
				total += seq.Len(l, g)
				if name != "d2o" && seq.Len(l, g) != n/2 {
					t.Errorf("%s: layer %d head %d keeps %d, want %d", name, l, g, seq.Len(l, g), n/2)
				}
			}
		}
		if want := c.Layers * c.KVHeads * n / 2; total < want-c.Layers || total > want+c.Layers {
			t.Errorf("%s: %d tokens kept in all, want about %d", name, total, want)
		}
		if _, err := m.Forward(seq, tokens[:1], model.LastLogits); err != nil {
			t.Errorf("%s: decode after compression: %v", name, err)
		}
		seq.Release()
	}
}
