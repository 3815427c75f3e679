package press

import (
	"slices"
	"testing"
)

func TestKeyDiffSinks(t *testing.T) {
	e := func(i int, v float32) []float32 { k := make([]float32, 4); k[i] = v; return k }
	eight := [][]float32{e(0, 1), e(1, 1), e(0, 5), e(2, 1), e(0, 1), e(3, 1), e(0, 2), e(1, 1)}
	// KeyDiff alone keeps [1 3 5 7]; with one sink and one recent token
	// protected, the sink 0 and the last token 7 stay, and KeyDiff's two
	// most distinct of the rest, 3 and 5.
	s := handState(eight)
	p := Protect{Scorer: KeyDiff{}, Sink: 1, Recent: 1}
	if got := (Uniform{}).Select(p.Score(s), 0, 1, 0.5)[0]; !slices.Equal(got, []int{0, 3, 5, 7}) {
		t.Errorf("kept %v, want [0 3 5 7]", got)
	}
	// The registered press keeps sinks and window whatever KeyDiff says.
	keys := make([][]float32, 200)
	for j := range keys {
		keys[j] = e(0, 1)
		if j%2 == 1 {
			keys[j] = e(1+j%3, 1)
		}
	}
	got := kept(t, "keydiff_sinks", handState(keys), 0.5)
	for _, j := range []int{0, 1, 2, 3, 136, 150, 198, 199} {
		if !slices.Contains(got, j) {
			t.Errorf("token %d dropped; sinks [0, 4) and window [136, 200) must stay", j)
		}
	}
}

func TestProtectOrder(t *testing.T) {
	// Sinks rank first, then recent tokens, later ones higher, then the
	// rest in their own order.
	sc := []float32{-1, 7, 3, 0, -2}
	protect(sc, 1, 2, -2, 7)
	if !(sc[0] > sc[4] && sc[4] > sc[3] && sc[3] > sc[1] && sc[1] > sc[2]) {
		t.Errorf("protected scores %v", sc)
	}
	// A budget below sinks + recent keeps the sinks, then the latest.
	sc = []float32{0, 0, 0, 0, 0, 0}
	protect(sc, 1, 3, 0, 0)
	if got := topK(sc, 2); !slices.Equal(got, []int{0, 5}) {
		t.Errorf("kept %v, want [0 5]", got)
	}
}
