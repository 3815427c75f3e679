package press

import (
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

// padState is a layer of two KV heads (two query heads each, head_dim 4)
// over n tokens: head 0 has one key, token 5, that every query [0 1 0 0]
// attends to; head 1's keys are zero, so its attention is spread evenly
// and its scores are all small. win window queries (and, pre-RoPE, every
// token's query) are recorded.
func padState(n, win int) *State {
	s := duoState(2, n)
	s.Key(0, 5)[1] = 20
	s.InvFreq = []float32{1, 0.01}
	s.Obs = &model.Observer{Queries: make([][]float32, 1), QueriesPre: make([][]float32, 1)}
	for t := range n {
		for range s.Heads {
			if t >= n-win {
				s.Obs.Queries[0] = append(s.Obs.Queries[0], 0, 1, 0, 0)
			}
			s.Obs.QueriesPre[0] = append(s.Obs.QueriesPre[0], 0, 1, float32(t%3), 0)
		}
	}
	return s
}

// TestPaddingSurvivesHeadSplits: SnapKV's window and ExpectedAttention's
// sinks score above every other token of the layer, in both heads, so
// AdaKV's top-k across heads keeps them all. Before, each head padded with
// its own maximum: head 1's window sat at head 1's small maximum and
// AdaKV gave its budget to head 0.
func TestPaddingSurvivesHeadSplits(t *testing.T) {
	const n, win = 20, 4
	for _, tc := range []struct {
		name      string
		scorer    Scorer
		protected func(j int) bool
	}{
		{"snapkv", SnapKV{Window: win, Kernel: 5}, func(j int) bool { return j >= n-win }},
		{"expected_attention", ExpectedAttention{Future: 8, Sink: 4}, func(j int) bool { return j < 4 }},
		{"keydiff_sinks", Protect{Scorer: KeyDiff{}, Sink: 2, Recent: 2}, func(j int) bool { return j < 2 || j >= n-2 }},
	} {
		s := padState(n, win)
		scores := tc.scorer.Score(s)
		for g, sc := range scores {
			for j, v := range sc {
				if !tc.protected(j) {
					continue
				}
				for h, other := range scores {
					for i, w := range other {
						if !tc.protected(i) && w >= v {
							t.Errorf("%s: head %d token %d (%g) ≤ head %d token %d (%g)", tc.name, g, j, v, h, i, w)
						}
					}
				}
			}
		}
		// Ratio 0.75: 5 tokens a head, 10 in all, safeguard 1 a head.
		keep := AdaKV{Alpha: 0.2}.Select(scores, 0, 1, 0.75)
		for g, idx := range keep {
			for j := range n {
				if tc.protected(j) && !slices.Contains(idx, j) {
					t.Errorf("%s: AdaKV evicted protected token %d of head %d (kept %v)", tc.name, j, g, idx)
				}
			}
		}
	}
}

func TestPadLayer(t *testing.T) {
	out := [][]float32{{1, 5, 0}, {2, 0, 0}}
	padMax(out[0], 2)
	padMax(out[1], 1)
	padLayer(out)
	want := [][]float32{{1, 5, 6}, {2, 6, 6}}
	if !slices.EqualFunc(out, want, slices.Equal) {
		t.Errorf("padded %v, want %v", out, want)
	}
}
