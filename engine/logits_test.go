package engine

import (
	"math"
	"strings"
	"testing"
)

// TestAdjust checks the logit processors on a small row, value by value.
func TestAdjust(t *testing.T) {
	base := []float32{2, -1, 0.5, 3, 0}
	for _, tc := range []struct {
		name   string
		p      Sampling
		prompt []int
		out    []int // generated so far
		want   []float32
	}{
		{"none", Sampling{}, nil, []int{0, 0, 3}, []float32{2, -1, 0.5, 3, 0}},
		{"bias", Sampling{LogitBias: map[int]float32{1: 5, 3: -100}}, nil, nil, []float32{2, 4, 0.5, -97, 0}},
		{"presence", Sampling{PresencePenalty: 0.5}, nil, []int{0, 0, 3}, []float32{1.5, -1, 0.5, 2.5, 0}},
		{"frequency", Sampling{FrequencyPenalty: 0.5}, nil, []int{0, 0, 3}, []float32{1, -1, 0.5, 2.5, 0}},
		{"both", Sampling{PresencePenalty: 1, FrequencyPenalty: -0.25}, nil, []int{1, 1}, []float32{2, -1.5, 0.5, 3, 0}},
		{"repetition", Sampling{RepetitionPenalty: 2}, []int{0, 1}, []int{2}, []float32{1, -2, 0.25, 3, 0}},
		{"repetition once per token", Sampling{RepetitionPenalty: 2}, []int{0}, []int{0, 0}, []float32{1, -1, 0.5, 3, 0}},
	} {
		s := NewSampler(tc.p)
		s.SetPrompt(tc.prompt)
		for _, id := range tc.out {
			s.Accepted(id)
		}
		row := append([]float32(nil), base...)
		s.Adjust(row)
		for i := range row {
			if math.Abs(float64(row[i]-tc.want[i])) > 1e-6 {
				t.Errorf("%s: got %v, want %v", tc.name, row, tc.want)
				break
			}
		}
	}
}

// TestMinPAndMask checks that min-p keeps only tokens near the best one
// and that masked (−∞) tokens are never drawn.
func TestMinPAndMask(t *testing.T) {
	row := []float32{5, 4.9, 0, -1, 3}
	s := NewSampler(Sampling{Temperature: 1, MinP: 0.5, Seed: 3})
	for range 500 {
		if id := s.Sample(append([]float32(nil), row...)); id != 0 && id != 1 {
			t.Fatalf("min-p 0.5 drew token %d (p/pmax = %.3f)", id, math.Exp(float64(row[id]-row[0])))
		}
	}
	masked := append([]float32(nil), row...)
	mask := []uint64{1<<2 | 1<<3}
	applyMask(masked, mask)
	s = NewSampler(Sampling{Temperature: 1, Seed: 4})
	seen := map[int]bool{}
	for range 500 {
		seen[s.Sample(append([]float32(nil), masked...))] = true
	}
	if len(seen) != 2 || !seen[2] || !seen[3] {
		t.Errorf("masked sampling drew %v, want tokens 2 and 3", seen)
	}
	if id := Argmax(masked); id != 2 {
		t.Errorf("greedy under the mask picked %d, want 2", id)
	}
}

// TestLogprobOf checks a logprob and its alternatives.
func TestLogprobOf(t *testing.T) {
	row := []float32{1, 3, 2, 3, -5}
	lp := logprobOf(row, 2, 3)
	var z float64
	for _, v := range row {
		z += math.Exp(float64(v))
	}
	want := func(id int) float32 { return float32(float64(row[id]) - math.Log(z)) }
	if math.Abs(float64(lp.Logprob-want(2))) > 1e-6 || len(lp.Top) != 3 {
		t.Fatalf("got %+v", lp)
	}
	for i, id := range []int{1, 3, 2} { // ties to the lower id
		if lp.Top[i].Token != id || math.Abs(float64(lp.Top[i].Logprob-want(id))) > 1e-6 {
			t.Errorf("top %d: %+v, want token %d", i, lp.Top[i], id)
		}
	}
}

// TestStopAcrossTokens checks that stop strings are found when their
// characters come in different pieces, and that nothing of them leaks out.
func TestStopAcrossTokens(t *testing.T) {
	for _, tc := range []struct {
		stops  []string
		pieces []string
		want   string
		hit    bool
	}{
		{[]string{"abc"}, []string{"xa", "b", "cd"}, "x", true},
		{[]string{"abc"}, []string{"xab", "d"}, "xabd", false},
		{[]string{"END"}, []string{"one E", "N", "D two"}, "one ", true},
		{[]string{"\n\n", "}"}, []string{"a\n", "\nb}"}, "a", true},
		{[]string{"éa"}, []string{"x\u00e9", "a"}, "x", true},
		{[]string{"aab"}, []string{"a", "a", "a", "b"}, "a", true},
	} {
		m := stopMatcher{stops: tc.stops}
		var out strings.Builder
		hit := false
		for _, p := range tc.pieces {
			text, h := m.push(p)
			out.WriteString(text)
			if h {
				hit = true
				break
			}
		}
		if !hit {
			out.WriteString(m.flush())
		}
		if out.String() != tc.want || hit != tc.hit {
			t.Errorf("stops %q, pieces %q: %q hit=%v, want %q hit=%v", tc.stops, tc.pieces, out.String(), hit, tc.want, tc.hit)
		}
	}
}
