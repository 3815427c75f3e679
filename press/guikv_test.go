package press

import (
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

func TestGUIKVKeepsSalientHiddenStates(t *testing.T) {
	// 12 tokens, every query zero: attention is flat and cannot choose.
	// Token 3's hidden state has a large norm, token 7's a middling one:
	// with room for one token beside the window of 2, GUI-KV keeps 3.
	const n, hidden = 12, 3
	keys := make([][]float32, n)
	for j := range keys {
		keys[j] = make([]float32, 4)
	}
	s := handState(keys)
	s.Obs = &model.Observer{Queries: [][]float32{make([]float32, n*s.Heads*s.HeadDim)},
		HiddenStates: [][]float32{make([]float32, n*hidden)}}
	for j := range n {
		s.Obs.HiddenStates[0][j*hidden] = 1
	}
	s.Obs.HiddenStates[0][3*hidden] = 30
	s.Obs.HiddenStates[0][7*hidden] = 5
	p := GUIKV{Window: 2, Kernel: 1, Alpha: 1, Tau: 1}
	sc := p.Score(s)
	keep := Uniform{}.Select(sc, 0, 1, 0.75)
	for g := range keep {
		if !slices.Equal(keep[g], []int{3, 10, 11}) {
			t.Errorf("head %d kept %v, want [3 10 11]", g, keep[g])
		}
	}
	if !(sc[0][3] > sc[0][7] && sc[0][7] > sc[0][0]) {
		t.Errorf("scores %v: want token 3 > 7 > 0", sc[0])
	}
	if got := p.Needs(); got.Window != -1 || !got.Hidden {
		t.Errorf("needs %+v, want every token's queries and hidden states", got)
	}
}
