package press

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

// duoState builds a one-layer state of kvHeads KV heads × 2 query heads,
// head_dim 4, n tokens at positions 0..n−1 with zero keys.
func duoState(kvHeads, n int) *State {
	d := 4
	s := &State{Layer: 0, Layers: 1, Heads: 2 * kvHeads, KVHeads: kvHeads, HeadDim: d, AttnScale: 1,
		Keys: make([][]float32, kvHeads), Values: make([][]float32, kvHeads), Positions: make([][]int, kvHeads)}
	for g := range kvHeads {
		s.Keys[g] = make([]float32, n*d)
		s.Values[g] = make([]float32, n*d)
		for j := range n {
			s.Positions[g] = append(s.Positions[g], j)
		}
	}
	return s
}

func span(lo, hi int) []int {
	var out []int
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

func TestDuoRetrievalKeepsAllStreamingSinksAndRecent(t *testing.T) {
	s := duoState(4, 40)
	scores := DuoAttention{Sink: 4}.Score(s)
	b := Duo{Retrieval: [][]bool{{true, false, false, false}}, Sink: 4, MinRecent: 4}
	keep := b.Select(scores, 0, 1, 0.5)
	// Budget 4·20 = 80: the retrieval head keeps 40, three streaming heads
	// share 40 as 14, 13, 13.
	if !slices.Equal(keep[0], span(0, 40)) {
		t.Errorf("retrieval head kept %v", keep[0])
	}
	for g, want := range []int{14, 13, 13} {
		got := keep[g+1]
		wantIdx := append(span(0, 4), span(40-(want-4), 40)...)
		if !slices.Equal(got, wantIdx) {
			t.Errorf("streaming head %d kept %v, want %v", g+1, got, wantIdx)
		}
	}
	total := 0
	for _, k := range keep {
		total += len(k)
	}
	if total != 80 {
		t.Errorf("kept %d in all, want 80", total)
	}
}

func TestDuoBudgetFloorAndNoRetrieval(t *testing.T) {
	s := duoState(2, 20)
	scores := DuoAttention{Sink: 4}.Score(s)
	// The retrieval head alone fills the budget: the streaming head still
	// keeps its sinks and MinRecent recent tokens.
	keep := Duo{Retrieval: [][]bool{{false, true}}, Sink: 4, MinRecent: 4}.Select(scores, 0, 1, 0.5)
	if want := append(span(0, 4), span(16, 20)...); !slices.Equal(keep[0], want) {
		t.Errorf("streaming head kept %v, want %v", keep[0], want)
	}
	if len(keep[1]) != 20 {
		t.Errorf("retrieval head kept %d of 20", len(keep[1]))
	}
	// No retrieval head: StreamingLLM, ⌊n·(1−ratio)⌋ per head.
	keep = Duo{Retrieval: [][]bool{{false, false}}, Sink: 4, MinRecent: 4}.Select(scores, 0, 1, 0.25)
	for g := range keep {
		if want := append(span(0, 4), span(9, 20)...); !slices.Equal(keep[g], want) {
			t.Errorf("head %d kept %v, want %v", g, keep[g], want)
		}
	}
	// Heads beyond the file's rows are streaming.
	if (Duo{Retrieval: [][]bool{{true}}}).IsRetrieval(3, 0, nil) {
		t.Error("layer outside the head file is a retrieval head")
	}
}

func TestDuoOnTheFly(t *testing.T) {
	const n = 100
	s := duoState(2, n)
	// Head 0 attends to a token in the middle (retrieval), head 1 to its
	// first token (a sink: streaming).
	s.Key(0, 50)[1] = 20
	s.Key(1, 0)[1] = 20
	s.Obs = &model.Observer{Queries: make([][]float32, 1)}
	for range 2 { // two window queries
		for range s.Heads {
			s.Obs.Queries[0] = append(s.Obs.Queries[0], 0, 1, 0, 0)
		}
	}
	p := DuoAttention{Sink: 4, Window: 8}
	mass := p.NonLocalMass(s)
	if mass[0] < 0.9 || mass[1] > 0.1 {
		t.Fatalf("non-local mass %v", mass)
	}
	scores := p.Score(s)
	if !math.IsInf(float64(scores[0][10]), 1) || math.IsInf(float64(scores[1][10]), 1) {
		t.Fatalf("retrieval mark wrong: %v %v", scores[0][10], scores[1][10])
	}
}

func TestLoadHeads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "heads.json")
	h := &HeadFile{Model: "m", Layers: 2, KVHeads: 2, Retrieval: [][]bool{{true, false}, {false, false}},
		Scores: [][]float64{{0.5, 0.1}, {0.1, 0}}}
	if err := h.Write(path); err != nil {
		t.Fatal(err)
	}
	b, err := LoadHeads(path)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Retrieval[0][0] || b.Retrieval[0][1] || b.Sink != 4 {
		t.Errorf("loaded %+v", b)
	}
	p, err := NewDuo(path, 0.5)
	if err != nil || p.Scorer.Needs().Window != 0 {
		t.Fatalf("NewDuo: %v %+v", err, p)
	}
	// Half of four heads stream: the two lowest scores, (1,1) and then
	// (0,1) before (1,0) among the equal 0.1s.
	want := [][]bool{{false, true}, {false, true}}
	if got := Streaming(p.Budget.(DuoHeads).Scores, 0.5); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("streaming heads %v, want %v", got, want)
	}
	os.WriteFile(path, []byte(`{"layers":2,"kv_heads":2,"retrieval":[[true]]}`), 0o644)
	if _, err := LoadHeads(path); err == nil {
		t.Error("misshapen head file accepted")
	}
}
