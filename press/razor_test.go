package press

import (
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

// razorState is duoState with key[0] = value[0] = the token's position,
// so that a mean over dropped tokens is their mean position.
func razorState(kvHeads, n int) *State {
	s := duoState(kvHeads, n)
	for g := range kvHeads {
		for j := range n {
			s.Key(g, j)[0] = float32(j)
			s.Value(g, j)[0] = float32(j)
		}
	}
	return s
}

func meanOf(lo, hi int) float32 { return float32(lo+hi-1) / 2 }

func TestRazorSelectCompensated(t *testing.T) {
	type head struct {
		full   bool // keeps every token, no compensation token
		recent int  // real recent tokens after the 4 sinks
	}
	cases := []struct {
		name  string
		b     Razor
		n     int
		ratio float64
		want  []head
	}{
		// Budget 4·20 = 80: the file's retrieval head keeps 40, three
		// others share 40 as 14, 13, 13 entries: 4 sinks, 9/8/8 recent
		// tokens and the compensation token each.
		{"file", Razor{Retrieval: [][]bool{{true, false, false, false}}, Sink: 4, MinRecent: 4},
			40, 0.5, []head{{full: true}, {recent: 9}, {recent: 8}, {recent: 8}}},
		// Budget 40 cannot hold a full head of 40 and three heads at their
		// floor of 9: the retrieval head is demoted, all four keep 10.
		{"demoted", Razor{Retrieval: [][]bool{{true, false, false, false}}, Sink: 4, MinRecent: 4},
			40, 0.75, []head{{recent: 5}, {recent: 5}, {recent: 5}, {recent: 5}}},
		// Two marked heads, room for one: the file's higher score stays.
		{"by score", Razor{Retrieval: [][]bool{{true, true, false, false}}, Scores: [][]float64{{0.2, 0.7, 0, 0}}, Sink: 4, MinRecent: 4},
			40, 0.5, []head{{recent: 9}, {full: true}, {recent: 8}, {recent: 8}}},
		// No head file, nothing observed: every head streams.
		{"none", Razor{Share: 0.15, Sink: 4, MinRecent: 4, Window: 8},
			40, 0.5, []head{{recent: 15}, {recent: 15}, {recent: 15}, {recent: 15}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := razorState(len(tc.want), tc.n)
			kept := tc.b.SelectCompensated(s, RazorAttention{Sink: 4}.Score(s), tc.ratio)
			total := 0
			for g, w := range tc.want {
				k := kept[g]
				total += len(k.Idx)
				if k.Count > 0 {
					total++
				}
				if w.full {
					if k.Count > 0 || !slices.Equal(k.Idx, span(0, tc.n)) {
						t.Errorf("head %d: %+v, want every token", g, k)
					}
					continue
				}
				if want := append(span(0, 4), span(tc.n-w.recent, tc.n)...); !slices.Equal(k.Idx, want) {
					t.Errorf("head %d kept %v, want %v", g, k.Idx, want)
				}
				// The compensation token: mean of the dropped 4..n−recent,
				// at the first dropped position.
				if k.Count != tc.n-w.recent-4 || k.Pos != 4 || k.Key[0] != meanOf(4, tc.n-w.recent) || k.Value[0] != meanOf(4, tc.n-w.recent) {
					t.Errorf("head %d compensation for %d tokens at %d (key %v), want mean %v at 4", g, k.Count, k.Pos, k.Key[0], meanOf(4, tc.n-w.recent))
				}
			}
			if want := int(float64(len(tc.want)*tc.n) * (1 - tc.ratio)); total != want {
				t.Errorf("layer keeps %d entries, want %d", total, want)
			}
		})
	}
}

func TestRazorOnTheFly(t *testing.T) {
	// Head 0 reads token 20, outside the sinks and the last 64 positions
	// (retrieval), head 1 its first token (a sink).
	const n = 100
	s := razorState(2, n)
	s.Key(0, 20)[1] = 20
	s.Key(1, 0)[1] = 20
	s.Obs = &model.Observer{Queries: make([][]float32, 1)}
	for range 2 {
		for range s.Heads {
			s.Obs.Queries[0] = append(s.Obs.Queries[0], 0, 1, 0, 0)
		}
	}
	p, err := New("razor_attention", 0.25)
	if err != nil {
		t.Fatal(err)
	}
	if p.Scorer.Needs().Window != DuoWindow {
		t.Errorf("needs %+v", p.Scorer.Needs())
	}
	b := p.Budget.(Razor)
	// ⌈0.15·2⌉ = 1 candidate, the non-local head 0; at 0.25 the budget
	// 150 holds it in full and head 1 keeps 50 entries.
	if got := b.RetrievalHeads(s, 0.25); !slices.Equal(got, []int{0}) {
		t.Fatalf("retrieval heads %v, want [0]", got)
	}
	kept := b.SelectCompensated(s, p.Scorer.Score(s), 0.25)
	if kept[0].Count > 0 || len(kept[0].Idx) != n {
		t.Errorf("retrieval head kept %d, extra %v", len(kept[0].Idx), kept[0].Count > 0)
	}
	if len(kept[1].Idx) != 49 || kept[1].Count == 0 {
		t.Errorf("streaming head kept %d real tokens, extra %v; want 49 and a compensation token", len(kept[1].Idx), kept[1].Count)
	}
	// At 0.5 the budget (100) cannot hold a full head: no retrieval head.
	if got := b.RetrievalHeads(s, 0.5); len(got) != 0 {
		t.Errorf("retrieval heads at 0.5: %v, want none", got)
	}
	// The plain Select (no compensation hook) has no retrieval heads
	// without a file and keeps ⌊n·(1−ratio)⌋ per head.
	for g, idx := range b.Select(p.Scorer.Score(s), 0, 1, 0.25) {
		if len(idx) != 75 {
			t.Errorf("plain select: head %d keeps %d, want 75", g, len(idx))
		}
	}
}
