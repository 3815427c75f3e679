package press

import (
	"slices"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

func TestAdaKVSharesTheLayerBudget(t *testing.T) {
	// Head 0's scores are all high, head 1's all low: uniform would keep
	// 4 + 4; AdaKV gives head 0 more, the safeguard keeps head 1's best.
	scores := [][]float32{
		{10, 9, 8, 7, 6, 5, 4, 3},
		{0.1, 0.2, 0.3, 0.4, 0, 0, 0, 0},
	}
	cases := []struct {
		alpha float64
		want  [][]int
	}{
		// Safeguard ⌊0.5·4⌋ = 2 per head, then the 4 best left: all head 0's.
		{0.5, [][]int{{0, 1, 2, 3, 4, 5}, {2, 3}}},
		// No safeguard: head 0 takes the whole budget, head 1 keeps nothing.
		{0, [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {}}},
		// Safeguard 4 = the uniform share: AdaKV is Uniform.
		{1, [][]int{{0, 1, 2, 3}, {0, 1, 2, 3}}},
	}
	for _, tc := range cases {
		got := AdaKV{Alpha: tc.alpha}.Select(scores, 0, 1, 0.5)
		if len(got) != 2 || !slices.Equal(got[0], tc.want[0]) || !slices.Equal(got[1], tc.want[1]) {
			t.Errorf("alpha %v: kept %v, want %v", tc.alpha, got, tc.want)
		}
		if got[1] == nil {
			t.Errorf("alpha %v: a head keeping nothing must get an empty list, not nil", tc.alpha)
		}
	}
}

func TestAdaKVDefaultSafeguard(t *testing.T) {
	// 20 tokens, ratio 0.5: share 10, safeguard ⌊0.2·10⌋ = 2.
	a, b := make([]float32, 20), make([]float32, 20)
	for j := range a {
		a[j] = float32(100 + j)
		b[j] = float32(j) // all below head 0's
	}
	p, err := New("adakv_keydiff", 0.5)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Budget.Select([][]float32{a, b}, 0, 1, 0.5)
	if len(got[0]) != 18 || !slices.Equal(got[1], []int{18, 19}) {
		t.Errorf("kept %d and %v, want 18 and the safeguard [18 19]", len(got[0]), got[1])
	}
}

func TestAdaKVFreesMemoryPerHead(t *testing.T) {
	// Keep what AdaKV selects in a real cache: heads end with different
	// counts, and the bytes fall with the blocks each head gives back.
	const n, d = 128, 4
	seq := kvcache.New(1, 2, d)
	k := []float32{1, 0, 0, 0}
	for j := range n {
		for g := range 2 {
			seq.Append(0, g, k, k, j)
		}
	}
	seq.Advance(n)
	full := seq.Bytes()
	a, b := make([]float32, n), make([]float32, n)
	for j := range a {
		a[j] = float32(j + n)
		b[j] = float32(j)
	}
	keep := AdaKV{Alpha: 0.2}.Select([][]float32{a, b}, 0, 1, 0.75)
	for g, idx := range keep {
		if err := seq.Keep(0, g, idx); err != nil {
			t.Fatal(err)
		}
	}
	if l0, l1 := seq.Len(0, 0), seq.Len(0, 1); l0+l1 != 64 || l0 <= l1 {
		t.Fatalf("heads keep %d and %d, want 64 in all, head 0 more", l0, l1)
	}
	if got := seq.Bytes(); got > full/4+2*seq.Pool().BlockBytes() {
		t.Errorf("bytes %d after keeping a quarter of %d", got, full)
	}
}
