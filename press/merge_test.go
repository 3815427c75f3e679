package press

import (
	"math"
	"testing"

	"github.com/kvserve/kvserve/model"
)

// mergeState is one head of six 2-d tokens:
//
//	t0 (1, 0)      kept
//	t1 (0, 1)      kept
//	t2 (0.9, 0.1)  evicted, cos 0.994 with t0 → t0
//	t3 (−1, 0)     evicted, cos −1 with t0 and 0 with t1 → dropped
//	t4 (0.6, 0.8)  evicted, cos 0.6 with t0, 0.8 with t1 → t1
//	t5 (−1, 0.4)   evicted, cos 0.371 with t1 → t1, but under τ = 0.5
func mergeState() *State {
	keys := []float32{1, 0, 0, 1, 0.9, 0.1, -1, 0, 0.6, 0.8, -1, 0.4}
	vals := []float32{1, 1, 2, 2, 10, 0, 100, 100, 0, 10, 0, 1000}
	return &State{Heads: 1, KVHeads: 1, HeadDim: 2, Layers: 1,
		Keys: [][]float32{keys}, Values: [][]float32{vals}, Positions: [][]int{{0, 1, 2, 3, 4, 5}}}
}

func near(a, b float32) bool { return math.Abs(float64(a-b)) < 1e-4 }

func TestMergingTargets(t *testing.T) {
	s := mergeState()
	keep := []int{0, 1}
	cos2 := float32(0.9 / math.Sqrt(0.82))
	cos5 := float32(0.4 / math.Sqrt(1.16))
	for _, tc := range []struct {
		m    Merging
		into []int
		w    []float32
	}{
		{Merging{Budget: Uniform{}}, []int{-1, -1, 0, -1, 1, 1}, []float32{0, 0, cos2, 0, 0.8, cos5}},
		{Merging{Budget: Uniform{}, Threshold: 0.5}, []int{-1, -1, 0, -1, 1, -1}, []float32{0, 0, cos2, 0, 0.8, 0}},
	} {
		into, w := tc.m.targets(s, 0, keep)
		for j := range into {
			if into[j] != tc.into[j] || !near(w[j], tc.w[j]) {
				t.Errorf("τ=%v: token %d merges into %d with weight %v, want %d with %v", tc.m.Threshold, j, into[j], w[j], tc.into[j], tc.w[j])
			}
		}
	}
}

func TestMergingValues(t *testing.T) {
	s := mergeState()
	keep := []int{0, 1}
	cos2 := float32(0.9 / math.Sqrt(0.82))
	cos5 := float32(0.4 / math.Sqrt(1.16))
	v0 := []float32{(1 + cos2*10) / (1 + cos2), 1 / (1 + cos2)}
	for _, tc := range []struct {
		name string
		m    Merging
		want [][]float32
	}{
		{"merge_values", Merging{Budget: Uniform{}}, [][]float32{v0,
			{2 / (1.8 + cos5), (2 + 0.8*10 + cos5*1000) / (1.8 + cos5)}}},
		{"threshold 0.5", Merging{Budget: Uniform{}, Threshold: 0.5}, [][]float32{v0,
			{2 / 1.8, (2 + 0.8*10) / 1.8}}},
	} {
		got := tc.m.Merge(s, 0, keep)
		if len(got) != len(keep) {
			t.Fatalf("%s: %d values for %d kept", tc.name, len(got), len(keep))
		}
		for i := range got {
			for c := range got[i] {
				if !near(got[i][c], tc.want[i][c]) {
					t.Errorf("%s: kept %d value %v, want %v", tc.name, i, got[i], tc.want[i])
					break
				}
			}
		}
	}
	// A kept token nothing merges into is left as it is (nil); nothing
	// merged at all gives nil.
	got := Merging{Budget: Uniform{}, Threshold: 0.999}.Merge(s, 0, []int{0, 1})
	if got != nil {
		t.Errorf("τ=0.999 merged: %v", got)
	}
	// Kept, t3 (−1, 0) is t5's nearest (cos 0.928 > 0.371 with t1).
	into, _ := Merging{Budget: Uniform{}}.targets(s, 0, []int{0, 1, 3})
	if into[5] != 2 || into[4] != 1 || into[2] != 0 {
		t.Errorf("keeping t0, t1, t3: targets %v, want t2→0, t4→1, t5→2", into)
	}
	if (Merging{}).Merge(s, 0, nil) != nil {
		t.Error("merge into no kept token")
	}
}

func TestMergePressesRegistered(t *testing.T) {
	for _, name := range []string{"merge_values"} {
		p, err := New(name, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Budget.(Merger); !ok {
			t.Errorf("%s: budget %T is not a Merger", name, p.Budget)
		}
	}
}

// TestMergePressesOnAModel prefills the qwen2 fixture, compresses forks
// with merge_values through the hook, and checks that every head
// keeps ⌊n·(1 − ratio)⌋ tokens, that keys and positions are those of the
// kept tokens, that some values were merged, that the prefilled cache is
// untouched, that memory was given back and that the cache still decodes.
func TestMergePressesOnAModel(t *testing.T) {
	m := loadTiny(t)
	c := m.Config
	const n = 200
	tokens := make([]int, n)
	for i := range tokens {
		tokens[i] = 3 + (i*37)%(c.VocabSize-3)
	}
	var presses []*Press
	for _, name := range []string{"merge_values"} {
		for _, r := range []float64{0.5, 0.75} {
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
	d := c.HeadDim
	kb, kk, vb, vk := make([]float32, d), make([]float32, d), make([]float32, d), make([]float32, d)
	for _, p := range presses {
		seq, err := base.Fork(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Apply(m, seq, obs); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		k := int(float64(n) * (1 - p.Ratio))
		merged := 0
		for l := range c.Layers {
			for g := range c.KVHeads {
				v, b := seq.View(l, g), base.View(l, g)
				if v.Len() != k {
					t.Fatalf("%s %.2f: layer %d head %d keeps %d, want %d", p.Name, p.Ratio, l, g, v.Len(), k)
				}
				if b.Len() != n {
					t.Fatalf("%s: the prefilled cache lost tokens", p.Name)
				}
				for j := range k {
					pos := v.Pos(j)
					if j > 0 && pos <= v.Pos(j-1) {
						t.Fatalf("%s: layer %d head %d positions out of order", p.Name, l, g)
					}
					v.Key(j, kk)
					b.Key(pos, kb)
					v.Value(j, vk)
					b.Value(pos, vb)
					for i := range d {
						if kk[i] != kb[i] {
							t.Fatalf("%s: layer %d head %d token at %d: key changed", p.Name, l, g, pos)
						}
						if vk[i] != vb[i] {
							merged++
							break
						}
					}
				}
			}
		}
		t.Logf("%s %.2f: %d of %d kept tokens received merged values, %d bytes of %d",
			p.Name, p.Ratio, merged, k*c.Layers*c.KVHeads, seq.Bytes(), full)
		if merged == 0 {
			t.Errorf("%s %.2f: no value was merged", p.Name, p.Ratio)
		}
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
