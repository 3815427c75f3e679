package kvcache

import (
	"math"
	"slices"
	"testing"
)

func TestKeepWithExtra(t *testing.T) {
	extraK, extraV := make([]float32, dim), make([]float32, dim)
	for i := range dim {
		extraK[i], extraV[i] = 7+float32(i), -7-float32(i)
	}
	cases := []struct {
		name    string
		keep    []int
		pos     int
		wantPos []int // positions the head holds afterwards
		at      int   // index of the extra token
	}{
		// Sinks 0, 1, the extra token for the dropped 2..11 at 2, recent 12..15.
		{"middle", []int{0, 1, 12, 13, 14, 15}, 2, []int{0, 1, 2, 12, 13, 14, 15}, 2},
		{"first", []int{5, 6}, 0, []int{0, 5, 6}, 0},
		{"last", []int{0, 1}, 15, []int{0, 1, 15}, 2},
		{"alone", nil, 3, []int{3}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPool(0)
			s := p.NewSeq()
			fill(s, 0, 16)
			dropped := 16 - len(tc.keep)
			if err := s.KeepWithExtra(0, 1, tc.keep, extraK, extraV, tc.pos, dropped); err != nil {
				t.Fatal(err)
			}
			v := s.View(0, 1)
			var got []int
			for j := range v.Len() {
				got = append(got, v.Pos(j))
			}
			if !slices.Equal(got, tc.wantPos) {
				t.Fatalf("positions %v, want %v", got, tc.wantPos)
			}
			k, val := make([]float32, dim), make([]float32, dim)
			for j, pos := range got {
				v.Key(j, k)
				v.Value(j, val)
				wantK, wantV := vec(pos, 1, 1), vec(pos, 1, -1)
				if j == tc.at {
					wantK, wantV = extraK, extraV
				}
				if !slices.Equal(k, wantK) || !slices.Equal(val, wantV) {
					t.Fatalf("token %d (position %d): key %v value %v, want %v %v", j, pos, k, val, wantK, wantV)
				}
			}
			// 16 tokens in 4-token blocks: 4 blocks → ⌈(kept+1)/4⌉.
			if want := (len(tc.wantPos) + 3) / 4; len(s.heads[1].blocks) != want {
				t.Errorf("%d blocks, want %d", len(s.heads[1].blocks), want)
			}
			if used, _ := p.Stats(); used != 3*4+(len(tc.wantPos)+3)/4 {
				t.Errorf("%d blocks in use", used)
			}
			if s.Bytes() != p.UsedBytes() {
				t.Errorf("sequence holds %d bytes, the pool counts %d", s.Bytes(), p.UsedBytes())
			}
			// Scores weigh the extra token as the dropped tokens: its score
			// gains ln(dropped), the others none; the head is read through
			// Scores, not as plain blocks.
			q := make([]float32, dim)
			for i := range q {
				q[i] = 0.01 * float32(i+1)
			}
			scores := make([]float32, v.Len())
			v.Scores(scores, q, 0, v.Len(), 0.25)
			for j := range v.Len() {
				v.Key(j, k)
				want := 0.25 * dot(q, k)
				if j == tc.at {
					want += float32(math.Log(float64(dropped)))
				}
				if math.Abs(float64(scores[j]-want)) > 1e-5*math.Max(1, math.Abs(float64(want))) {
					t.Errorf("score of token %d: %v, want %v", j, scores[j], want)
				}
			}
			if v.Plain() {
				t.Error("a head with a weighted token reports plain blocks")
			}
			check(t, s, 1, 1, span(0, 16)) // other heads untouched
		})
	}
}

func TestKeepWithExtraRefuses(t *testing.T) {
	p := newTestPool(0)
	s := p.NewSeq()
	fill(s, 0, 8)
	k := make([]float32, dim)
	if err := s.KeepWithExtra(0, 0, []int{0, 5}, k, k, 5, 2); err == nil {
		t.Error("extra token at a kept token's position accepted")
	}
	if err := s.KeepWithExtra(0, 0, []int{3, 1}, k, k, 2, 2); err == nil {
		t.Error("descending indices accepted")
	}
	if err := s.KeepWithExtra(0, 0, []int{0}, k[:3], k, 2, 2); err == nil {
		t.Error("short key accepted")
	}
	if err := s.KeepWithExtra(0, 0, []int{0}, k, k, 2, 0); err == nil {
		t.Error("an extra token standing for no token accepted")
	}
	check(t, s, 0, 0, span(0, 8)) // refused: left as it was
}

func TestKeepWithExtraFork(t *testing.T) {
	// A fork sharing the blocks keeps the original tokens.
	p := newTestPool(0)
	s := p.NewSeq()
	fill(s, 0, 12)
	other, err := s.Fork(12)
	if err != nil {
		t.Fatal(err)
	}
	k := make([]float32, dim)
	if err := s.KeepWithExtra(1, 0, []int{0, 11}, k, k, 1, 10); err != nil {
		t.Fatal(err)
	}
	check(t, other, 1, 0, span(0, 12))
	if s.Len(1, 0) != 3 {
		t.Errorf("%d tokens, want 3", s.Len(1, 0))
	}
	// Truncate forgets the extra token with the positions after it.
	if err := s.Truncate(1); err != nil {
		t.Fatal(err)
	}
	if s.Len(1, 0) != 1 {
		t.Errorf("after truncate to 1: %d tokens, want 1", s.Len(1, 0))
	}
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
