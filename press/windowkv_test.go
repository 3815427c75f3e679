package press

import (
	"slices"
	"testing"
)

// windowState is 20 tokens whose keys give, for the query (4, 0, 0, 0),
// one sharp peak at token 4 (window [3, 6) of size 3) and a broad rise
// over tokens 12–14 (window [12, 15)); two observation queries.
func windowState() *State {
	keys := make([][]float32, 20)
	for j := range keys {
		keys[j] = []float32{0, 0, 0, 0}
	}
	keys[4][0] = 2 // logit 4: e⁴ ≈ 54.6
	for j := 12; j < 15; j++ {
		keys[j][0] = 1.6 // logit 3.2: e³·² ≈ 24.5 each
	}
	q := []float32{4, 0, 0, 0}
	return withQueries(handState(keys), q, q)
}

func TestWindowKVStrategies(t *testing.T) {
	cases := []struct {
		name string
		p    WindowKV
		want []int
	}{
		// The mean of the top ⌊3/2⌋ = 1 attention: the sharp peak wins.
		{"max", WindowKV{Obs: 2, Size: 3}, []int{3, 4, 5, 18, 19}},
		// The mean of the window: the broad rise wins.
		{"average", WindowKV{Obs: 2, Size: 3, Average: true}, []int{12, 13, 14, 18, 19}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := windowState()
			scores := tc.p.Score(s)
			// ⌊20·0.25⌋ = 5: the observation window and one window of 3.
			b := WindowGroups{Obs: 2, Size: 3, Group: 8, Beta: 14}
			keep := b.Select(scores, 0, 1, 0.75)
			for g := range keep {
				if !slices.Equal(keep[g], tc.want) {
					t.Errorf("head %d kept %v, want %v", g, keep[g], tc.want)
				}
			}
			// Every token of a window scores the window's score.
			if scores[0][3] != scores[0][5] || scores[0][12] != scores[0][14] {
				t.Errorf("window scores not constant: %v", scores[0])
			}
		})
	}
}

func TestWindowGroupBudget(t *testing.T) {
	cases := []struct {
		b      WindowGroups
		layers int
		want   []int // nil: flat, every layer 100
	}{
		// One layer per group, β 14: from 27/14 of the mean down to 1/14.
		{WindowGroups{Group: 1, Beta: 14}, 4, []int{192, 130, 69, 7}},
		// Two layers per group (8 layers: 4 groups), last 2/14.
		{WindowGroups{Group: 2, Beta: 14}, 8, []int{185, 185, 128, 128, 71, 71, 14, 14}},
		// Group 8 over 8 layers: groups of ⌊8/4⌋ = 2, last 8/14.
		{WindowGroups{Group: 8, Beta: 14}, 8, []int{142, 142, 114, 114, 85, 85, 57, 57}},
		// A short last group: 9 layers in groups of 2, scaled so that the
		// mean stays at most 100.
		{WindowGroups{Group: 8, Beta: 14}, 9, []int{136, 136, 115, 115, 95, 95, 75, 75, 54}},
		// 2 layers: groups of one layer, last 8/14.
		{WindowGroups{Group: 8, Beta: 14}, 2, []int{142, 57}},
		// Group ≥ β: flat.
		{WindowGroups{Group: 16, Beta: 14}, 32, nil},
		// No β: flat.
		{WindowGroups{Group: 8}, 32, nil},
	}
	for _, tc := range cases {
		var got []int
		total := 0
		for l := range tc.layers {
			v := tc.b.GroupBudget(100, l, tc.layers)
			got = append(got, v)
			total += v
			if tc.want == nil && v != 100 {
				t.Errorf("%+v: layer %d budget %d, want 100", tc.b, l, v)
			}
		}
		if tc.want != nil && !slices.Equal(got, tc.want) {
			t.Errorf("%+v over %d layers: %v, want %v", tc.b, tc.layers, got, tc.want)
		}
		if total > 100*tc.layers {
			t.Errorf("%+v: %d tokens in all, over the uniform %d", tc.b, total, 100*tc.layers)
		}
	}
}

func TestWindowGroupsShareIndices(t *testing.T) {
	// Layer 0 prefers window [0, 2), layer 1 window [4, 6); token 6 is the
	// observation window. ⌊7·0.5⌋ = 3: one window of 2 and the window.
	l0 := []float32{5, 5, 1, 1, 0, 0, 9}
	l1 := []float32{0, 0, 1, 1, 5, 5, 9}
	all := [][][]float32{{l0, l0}, {l1, l1}}
	b := WindowGroups{Obs: 1, Size: 2, Group: 2}
	all = append(all, all...) // 4 layers: groups of ⌊4/4⌋ = 1 at most
	b.Group = 1
	if got := b.SelectPlanned(all, 1, nil, 0.5); !slices.Equal(got[0], []int{4, 5, 6}) {
		t.Errorf("ungrouped layer 1 kept %v, want [4 5 6]", got[0])
	}
	all = append(all, all...) // 8 layers: groups of 2
	b.Group = 2
	for l, want := range [][]int{{0, 1, 6}, {0, 1, 6}} {
		got := b.SelectPlanned(all, l, nil, 0.5)
		if !slices.Equal(got[0], want) || !slices.Equal(got[1], want) {
			t.Errorf("layer %d kept %v, want %v in both heads", l, got, want)
		}
	}
	// A layer holding another count than its leader chooses its own too.
	six := []float32{0, 0, 5, 5, 1, 9}
	short := slices.Clone(all)
	short[1] = [][]float32{six, six}
	if got := b.SelectPlanned(short, 1, nil, 0.5); !slices.Equal(got[0], []int{2, 3, 5}) {
		t.Errorf("layer of another count kept %v, want [2 3 5]", got[0])
	}
}
