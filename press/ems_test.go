package press

import (
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

func TestGlobalLocalScore(t *testing.T) {
	cases := []struct {
		name   string
		sum    []float32 // attention summed into each of 4 tokens
		query  []float32 // the last token's query (nil: no window)
		window int
		want   []float32
	}{
		// Equal mean attention: token 0 was seen by 4 queries, token 3 by one.
		{name: "global divides by the queries that saw a token", sum: []float32{4, 3, 2, 1}, want: []float32{0.25, 0.25, 0.25, 0.25}},
		{name: "an early token with the same sum scores lower", sum: []float32{2, 3, 2, 1}, want: []float32{0.5 / 3.5, 1 / 3.5, 1 / 3.5, 1 / 3.5}},
		// A zero query attends uniformly (1/4 each, 1/3 after normalising
		// over the three tokens before the window); the window token scores
		// the layer's largest + 1.
		{name: "local part added, window kept", sum: []float32{6, 3, 2, 1}, query: []float32{0, 0}, window: 1,
			want: []float32{3.0/7 + 1.0/3, 2.0/7 + 1.0/3, 2.0/7 + 1.0/3, 3.0/7 + 1.0/3 + 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mgHead(1, 0, 0, 1, 1, 1, -1, 0)
			s.AttnScale = 1
			s.Obs = &model.Observer{AttnSum: [][][]float32{{c.sum}}}
			if c.query != nil {
				s.Obs.Queries = [][]float32{c.query}
			}
			got := GlobalLocal{Window: c.window}.Score(s)[0]
			if !mgClose(got, c.want) {
				t.Fatalf("scores %v, want %v", got, c.want)
			}
		})
	}
}

func TestEMSMerge(t *testing.T) {
	// Eight 2-d tokens, scores falling with the index except the evicted:
	//
	//	t0 (1, 0)       .9   kept as it is
	//	t1 (0, 1)       .8   kept as it is
	//	t2 (1, 1)       .7   centre
	//	t3 (−1, 1)      .6   centre
	//	t4 (0.9, 1.1)   .1   cos 0.995 with t2
	//	t5 (−1, 0.8)    .05  cos 0.994 with t3
	//	t6 (1, −1)      .02  cos 0 and −1 with the centres: zero class (though near t0)
	//	t7 (2, 2.2)     .03  cos 0.9989 with t2
	s := mgHead(1, 0, 0, 1, 1, 1, -1, 1, 0.9, 1.1, -1, 0.8, 1, -1, 2, 2.2)
	score := []float32{0.9, 0.8, 0.7, 0.6, 0.1, 0.05, 0.02, 0.03}
	weighted := func(key bool, tokens ...int) []float32 {
		out := make([]float32, 2)
		var w float32
		for _, j := range tokens {
			x := s.Value(0, j)
			if key {
				x = s.Key(0, j)
			}
			for c := range out {
				out[c] += score[j] * x[c]
			}
			w += score[j]
		}
		for c := range out {
			out[c] /= w
		}
		return out
	}
	cases := []struct {
		name    string
		ems     EMS
		members map[int][]int // centre → its tokens, itself included
	}{
		{"merge into centres", EMS{CentreShare: 0.5, Threshold: 0.5}, map[int][]int{2: {2, 4, 7}, 3: {3, 5}}},
		{"strict threshold merges only t7", EMS{CentreShare: 0.5, Threshold: 0.998}, map[int][]int{2: {2, 7}}},
		{"all to the zero class", EMS{CentreShare: 0.5, Threshold: 0.9995}, nil},
		{"no centres: eviction", EMS{CentreShare: 0, Threshold: 0.5}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.ems.merge(s, 0, score, 0.5)
			if !slices.Equal(r.keep, []int{0, 1, 2, 3}) {
				t.Fatalf("keeps %v, want [0 1 2 3]", r.keep)
			}
			if c.members == nil {
				if r.keys != nil || r.values != nil {
					t.Fatalf("merged %v / %v, want nothing", r.keys, r.values)
				}
				return
			}
			for i, j := range r.keep {
				m, ok := c.members[j]
				if !ok {
					if r.keys[i] != nil || r.values[i] != nil {
						t.Fatalf("token %d changed, want it as it was", j)
					}
					continue
				}
				if !mgClose(r.keys[i], weighted(true, m...)) || !mgClose(r.values[i], weighted(false, m...)) {
					t.Fatalf("centre %d holds %v / %v, want the weighted mean of %v: %v / %v", j, r.keys[i], r.values[i],
						m, weighted(true, m...), weighted(false, m...))
				}
			}
		})
	}
}
