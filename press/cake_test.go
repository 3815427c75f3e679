package press

import (
	"math"
	"slices"
	"testing"
)

func TestLayerShares(t *testing.T) {
	cases := []struct {
		weights      []float64
		total, limit int
		want         []int
	}{
		{[]float64{1, 3}, 8, 10, []int{2, 6}},
		// Layer 1 would get 10.8 of 12 but holds 8: the excess goes to 0.
		{[]float64{1, 9}, 12, 8, []int{4, 8}},
		// No preference at all: equal shares.
		{[]float64{0, 0, 0}, 9, 10, []int{3, 3, 3}},
		// More than every layer holds: all of it.
		{[]float64{1, 2}, 30, 10, []int{10, 10}},
		// Rounding remainders go to the heaviest layer.
		{[]float64{1, 1, 2}, 7, 10, []int{1, 1, 5}},
	}
	for _, tc := range cases {
		got := layerShares(tc.weights, tc.total, tc.limit)
		if !slices.Equal(got, tc.want) {
			t.Errorf("layerShares(%v, %d, %d) = %v, want %v", tc.weights, tc.total, tc.limit, got, tc.want)
		}
	}
}

// cakeState is a 12-token layer whose two window queries either read one
// different key each (the attention moves: temporal shift) or are zero
// (uniform attention that never moves: no shift at all).
func cakeState(shift bool) *State {
	keys := make([][]float32, 12)
	for j := range keys {
		keys[j] = []float32{0, 0, 0, 0}
	}
	keys[2] = []float32{1, 0, 0, 0}
	keys[5] = []float32{0, 1, 0, 0}
	q1, q2 := make([]float32, 4), make([]float32, 4)
	if shift {
		q1[0], q2[1] = 40, 40
	}
	return withQueries(handState(keys), q1, q2)
}

func TestCAKEMeasure(t *testing.T) {
	c := CAKE{Window: 2, Tau1: 1, Tau2: 1}
	// Attention that jumps between two keys: concentrated (low entropy),
	// shifting (high variance). Flat attention: the reverse.
	hm, vm := c.dispersion(cakeState(true))
	hs, vs := c.dispersion(cakeState(false))
	if !(hs > 10*hm && vm > 10*vs) {
		t.Errorf("moving H %g V %g, still H %g V %g: want the still layer more dispersed, the moving one more shifting", hm, vm, hs, vs)
	}
	if got := c.Measure(cakeState(true), nil); math.Abs(got-hm*vm) > 1e-12*math.Abs(hm*vm) {
		t.Errorf("preference %g, want H·V = %g", got, hm*vm)
	}
	// τ2 → large flattens V's part: the preference follows dispersion.
	c.Tau2 = 1e9
	if !(c.Measure(cakeState(false), nil) > c.Measure(cakeState(true), nil)) {
		t.Error("with τ2 large the flat layer should be preferred")
	}
}

func TestCAKEBudgetsFollowPreference(t *testing.T) {
	// Two layers of 12 tokens, ratio 0.5: 6 per head uniform, 4 outside
	// the window of 2. Layer 0 has all the preference, so it gets all 8
	// tokens outside the window, up to the 10 it holds; layer 1 keeps
	// only its window.
	c := CAKE{Window: 2, Tau1: 1, Tau2: 1}
	sc := make([]float32, 12)
	for j := range sc {
		sc[j] = float32(j % 5)
	}
	scores := [][]float32{sc, sc}
	measures := []float64{c.Measure(cakeState(true), nil), 0}
	all := [][][]float32{scores, scores}
	l0 := c.SelectPlanned(all, 0, measures, 0.5)
	l1 := c.SelectPlanned(all, 1, measures, 0.5)
	if len(l0[0]) != 10 || len(l1[0]) != 2 {
		t.Errorf("layers keep %d and %d, want 10 and 2", len(l0[0]), len(l1[0]))
	}
	// With AdaKV inside the layer, layer 0's 2×10 go mostly to the head
	// whose scores are higher: all 12 of head 0, 8 of head 1.
	hi := make([]float32, 12)
	for j := range hi {
		hi[j] = 10 + sc[j]
	}
	ada := CAKE{Window: 2, Tau1: 1, Tau2: 1, Heads: AdaKV{Alpha: 0.2}}
	got := ada.SelectPlanned([][][]float32{{hi, sc}, {hi, sc}}, 0, measures, 0.5)
	if len(got[0]) != 12 || len(got[1]) != 8 {
		t.Errorf("heads keep %d and %d, want 12 and 8", len(got[0]), len(got[1]))
	}
	// Without the planner pass, CAKE is a uniform budget.
	if got := c.Select(scores, 0, 2, 0.5); len(got[0]) != 6 {
		t.Errorf("plain Select keeps %d, want 6", len(got[0]))
	}
}

func TestCAKEScoreKeepsShiftingTokens(t *testing.T) {
	// The window's two queries read tokens 2 and 5 in turn: both have a
	// high mean and a high variance, and the window is kept.
	s := cakeState(true)
	p := &Press{Name: "cake", Scorer: CAKEScore{Window: 2, Kernel: 1, Gamma: 200}, Budget: Uniform{}, Ratio: 1 - 4.0/12}
	keep := p.Budget.Select(p.Scorer.Score(s), 0, 1, p.Ratio)[0]
	if !slices.Equal(keep, []int{2, 5, 10, 11}) {
		t.Errorf("kept %v, want [2 5 10 11]", keep)
	}
}

func TestWithNeeds(t *testing.T) {
	w := WithNeeds{Scorer: KeyDiff{}, More: Needs{Window: 32}}
	if got := w.Needs(); got.Window != 32 {
		t.Errorf("needs %+v, want a 32-query window", got)
	}
	if got := mergeNeeds(Needs{Window: -1}, Needs{Window: 8, Hidden: true}); got.Window != -1 || !got.Hidden {
		t.Errorf("merged %+v", got)
	}
}
