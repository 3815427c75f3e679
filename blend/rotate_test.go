package blend

import (
	"math"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// rope rotates x as the model does at position p.
func rope(x, invFreq []float32, p int) {
	half := len(invFreq)
	for i, f := range invFreq {
		ang := float64(float32(p) * f)
		c, s := float32(math.Cos(ang)), float32(math.Sin(ang))
		a, b := x[i], x[i+half]
		x[i], x[i+half] = a*c-b*s, b*c+a*s
	}
}

// TestRerotationTensors checks re-rotation on hand-made keys: moving a key
// rotated at one position to another equals rotating it there directly,
// and moving it back restores it.
func TestRerotationTensors(t *testing.T) {
	invFreq := make([]float32, 32)
	for i := range invFreq {
		invFreq[i] = float32(1 / math.Pow(10000, float64(2*i)/64))
	}
	raw := make([]float32, 64)
	for i := range raw {
		raw[i] = float32(math.Sin(float64(i)*1.7)) * 3
	}
	for _, tc := range []struct{ from, to int }{{0, 0}, {0, 1}, {5, 900}, {3000, 17}, {1234, 4095}} {
		moved := append([]float32{}, raw...)
		rope(moved, invFreq, tc.from)
		r := NewRotator(invFreq, 4096)
		r.Move(moved, tc.from, tc.to)
		direct := append([]float32{}, raw...)
		rope(direct, invFreq, tc.to)
		if d := maxDiff(moved, direct); d > 1e-5 {
			t.Errorf("%d → %d: re-rotated key differs from the key rotated at %d by %g", tc.from, tc.to, tc.to, d)
		}
		r.Move(moved, tc.to, tc.from)
		back := append([]float32{}, raw...)
		rope(back, invFreq, tc.from)
		if d := maxDiff(moved, back); d > 1e-5 {
			t.Errorf("%d → %d → back: differs by %g", tc.from, tc.to, d)
		}
	}
}

// TestRerotationModel checks re-rotation on tinychat: a document's
// layer-0 keys depend only on its tokens and positions, so keys computed
// at positions 0… and re-rotated to P… equal the keys the model computes
// at P…, to float tolerance.
func TestRerotationModel(t *testing.T) {
	m := loadTiny(t)
	doc := ids(9, 50)
	for _, offset := range []int{1, 37, 1500, 4000} {
		at0 := m.NewCache()
		if _, err := m.Forward(at0, doc, model.NoLogits); err != nil {
			t.Fatal(err)
		}
		atP := m.NewCache()
		pad := make([]float32, m.Config.HeadDim)
		for l := range m.Config.Layers {
			for g := range m.Config.KVHeads {
				for p := range offset {
					atP.Append(l, g, pad, pad, p)
				}
			}
		}
		atP.Advance(offset)
		if _, err := m.Forward(atP, doc[:min(len(doc), m.Config.MaxPositions-offset)], model.NoLogits); err != nil {
			t.Fatal(err)
		}
		n := min(len(doc), m.Config.MaxPositions-offset)
		k, want := make([]float32, 64), make([]float32, 64)
		rot := NewRotator(m.RopeInvFreq(0), m.Config.MaxPositions)
		worst := 0.0
		for g := range m.Config.KVHeads {
			for j := range n {
				at0.View(0, g).Key(j, k)
				rot.Move(k, j, offset+j)
				atP.View(0, g).Key(offset+j, want)
				var norm float64
				for _, x := range want {
					norm = max(norm, math.Abs(float64(x)))
				}
				worst = max(worst, maxDiff(k, want)/max(norm, 1))
			}
		}
		if worst > 1e-5 {
			t.Errorf("offset %d: re-rotated keys differ from keys computed there by %g (relative to the largest entry)", offset, worst)
		}
		at0.Release()
		atP.Release()
	}
	_ = kvcache.F32
}
