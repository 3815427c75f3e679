package press

import (
	"slices"
	"testing"
)

func TestLadderPattern(t *testing.T) {
	// 24 tokens, 2 sinks, 2 recent, ratio 0.5: k = 12, a middle of 20 of
	// which 8 are kept, f = 0.4. Run 2 gives rungs of B = 5 tokens; layer
	// 0 of 4 keeps the first two of each rung, the top layer the last two.
	p := Ladder{Sink: 2, Recent: 2, Run: 2}
	got := make([][]int, 4)
	for l := range got {
		got[l] = p.keep(24, l, 4, 0.5)
		if len(got[l]) != 12 {
			t.Fatalf("layer %d keeps %d tokens, want 12", l, len(got[l]))
		}
		if !slices.IsSorted(got[l]) || got[l][0] != 0 || got[l][1] != 1 || got[l][10] != 22 || got[l][11] != 23 {
			t.Fatalf("layer %d keeps %v: want sinks and recent at the ends", l, got[l])
		}
	}
	want0 := []int{0, 1, 2, 3, 7, 8, 12, 13, 17, 18, 22, 23}
	want3 := []int{0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 22, 23}
	if !slices.Equal(got[0], want0) || !slices.Equal(got[3], want3) {
		t.Errorf("layer 0 keeps %v, want %v; layer 3 keeps %v, want %v", got[0], want0, got[3], want3)
	}
	// The rungs climb with depth: each layer's first middle token is at
	// or after the one below.
	for l := 1; l < 4; l++ {
		if got[l][2] < got[l-1][2] {
			t.Errorf("layer %d starts its rung at %d, below layer %d's %d", l, got[l][2], l-1, got[l-1][2])
		}
	}
	// Every middle token is held by some layer.
	held := map[int]bool{}
	for _, idx := range got {
		for _, j := range idx {
			held[j] = true
		}
	}
	for j := 2; j < 22; j++ {
		if !held[j] {
			t.Errorf("token %d is in no layer", j)
		}
	}
}

func TestLadderSmallBudget(t *testing.T) {
	// A budget below sinks + recent keeps the sinks, then the most recent.
	got := Ladder{Sink: 4, Recent: 64, Run: 1}.keep(40, 0, 8, 0.75)
	if !slices.Equal(got, []int{0, 1, 2, 3, 34, 35, 36, 37, 38, 39}) {
		t.Errorf("kept %v", got)
	}
	// The registered press: every head of a layer keeps the same tokens.
	keep := kept(t, "lacache", handState(make([][]float32, 100)), 0.5)
	if len(keep) != 50 {
		t.Errorf("lacache keeps %d of 100 at ratio 0.5", len(keep))
	}
}
