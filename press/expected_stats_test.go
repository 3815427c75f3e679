package press

import (
	"math"
	"testing"

	"github.com/kvserve/kvserve/model"
)

// TestExpectedAttentionFromStatistics: the forward pass's running sums give
// ExpectedAttention the scores that every recorded pre-RoPE query gives,
// and the registered press asks for the sums only, not the queries.
func TestExpectedAttentionFromStatistics(t *testing.T) {
	const n = 120
	m, tokens := loadFixture(t, llamaFixture, n)
	p := ExpectedAttention{Future: 512, Sink: 4}
	need := p.Needs()
	if !need.QueryStats || need.PreRope || need.Window != 0 {
		t.Fatalf("needs %+v: want statistics, not queries", need)
	}
	obs := &model.Observer{From: 0, PreRope: true, QueryStats: true, StatsFrom: 4}
	seq := m.NewCache()
	defer seq.Release()
	if _, err := m.ForwardObserved(seq, tokens, model.NoLogits, obs); err != nil {
		t.Fatal(err)
	}
	if obs.QCount[0] != n-4 {
		t.Fatalf("%d queries summed, want %d", obs.QCount[0], n-4)
	}
	queriesOnly := *obs
	queriesOnly.QCount = nil
	for l := range m.Config.Layers {
		a := p.Score(newState(m, seq, l, obs))
		b := p.Score(newState(m, seq, l, &queriesOnly))
		for g := range a {
			for j := range a[g] {
				if d := math.Abs(float64(a[g][j] - b[g][j])); d > 1e-5*math.Max(1, math.Abs(float64(b[g][j]))) {
					t.Fatalf("layer %d head %d token %d: %g from sums, %g from queries", l, g, j, a[g][j], b[g][j])
				}
			}
		}
	}
}
