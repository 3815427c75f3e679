package press

import (
	"math"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

func TestThresholdSelect(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name   string
		scores [][]float32
		floor  int
		tau    float64
		want   [][]int
	}{
		{"cut shared by the heads", [][]float32{{0, 1, 2, 3, 4}, {4, 4, 0, 0, 0}}, 0, 0.5,
			[][]int{{2, 3, 4}, {0, 1}}},
		{"tau 0 keeps all", [][]float32{{0, 1}, {5, 2}}, 0, 0, [][]int{{0, 1}, {0, 1}}},
		{"floor saves a cold head", [][]float32{{10, 9, 8}, {0, 1, 0.5}}, 1, 0.5,
			[][]int{{0, 1, 2}, {1}}},
		{"infinite scores do not stretch the scale", [][]float32{{inf, 0, 1, 2}}, 0, 0.5,
			[][]int{{0, 2, 3}}},
		{"ties at the cut stay", [][]float32{{0, 5, 10, 5}}, 0, 0.5, [][]int{{1, 2, 3}}},
	} {
		got := Threshold{Floor: tc.floor}.Select(tc.scores, 0, 1, tc.tau)
		for g := range tc.want {
			if !slices.Equal(got[g], tc.want[g]) {
				t.Errorf("%s: head %d keeps %v, want %v", tc.name, g, got[g], tc.want[g])
			}
		}
	}
}

// TestThresholdOnAModel prefills the llama fixture and compresses forks
// with each threshold press at rising τ: every head keeps at least the
// floor, a higher τ never keeps more tokens or bytes, the bytes fall below
// the full cache's, and the compressed cache still decodes to finite
// logits.
func TestThresholdOnAModel(t *testing.T) {
	const n = 300
	m, tokens := loadFixture(t, llamaFixture, n)
	c := m.Config
	for _, name := range []string{"threshold_keydiff", "threshold_snapkv", "threshold_expected_attention"} {
		t.Run(name, func(t *testing.T) {
			var presses []*Press
			for _, tau := range []float64{0.2, 0.5, 0.8} {
				p, err := New(name, tau)
				if err != nil {
					t.Fatal(err)
				}
				presses = append(presses, p)
			}
			base := m.NewCache()
			defer base.Release()
			obs := Observer(presses, 0, n)
			if _, err := m.ForwardObserved(base, tokens, model.NoLogits, obs); err != nil {
				t.Fatal(err)
			}
			prevTokens, prevBytes := math.MaxInt, base.Bytes()+1
			for _, p := range presses {
				seq, err := base.Fork(n)
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Apply(m, seq, obs); err != nil {
					t.Fatal(err)
				}
				kept := 0
				for l := range c.Layers {
					for g := range c.KVHeads {
						if got := seq.Len(l, g); got < 4 {
							t.Errorf("τ %.1f: layer %d head %d keeps %d, under the floor of 4", p.Ratio, l, g, got)
						}
						kept += seq.Len(l, g)
					}
				}
				if kept > prevTokens || seq.Bytes() > prevBytes {
					t.Errorf("τ %.1f keeps %d tokens in %d bytes, more than a lower τ (%d in %d)", p.Ratio, kept, seq.Bytes(), prevTokens, prevBytes)
				}
				prevTokens, prevBytes = kept, seq.Bytes()
				logits, err := m.Forward(seq, []int{7}, model.LastLogits)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range logits {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("τ %.1f: logit %v", p.Ratio, v)
					}
				}
				seq.Release()
			}
			if prevBytes >= base.Bytes() {
				t.Errorf("τ 0.8 holds %d bytes, the full cache %d", prevBytes, base.Bytes())
			}
		})
	}
}
