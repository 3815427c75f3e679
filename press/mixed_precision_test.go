package press

import (
	"math"
	"reflect"
	"testing"

	"github.com/kvserve/kvserve/model"
)

func TestMixedPrecisionPlan(t *testing.T) {
	T, F := true, false
	for _, tc := range []struct {
		name     string
		scores   []float32
		sealable int
		ratio    float64
		want     []bool
	}{
		{"half of 8, all sealable", []float32{5, 1, 4, 2, 8, 0, 7, 3}, 8, 0.5, []bool{T, F, T, F, T, F, T, F}},
		{"tail not sealable stays high", []float32{5, 1, 4, 2, 8, 0, 7, 3}, 4, 0.25, []bool{T, F, T, F, T, T, T, T}},
		{"fewer sealable than the ratio asks", []float32{5, 1, 4, 2, 8, 0}, 2, 0.9, []bool{F, F, T, T, T, T}},
		{"ties: the earlier token stays high", []float32{1, 1, 1, 1}, 4, 0.5, []bool{T, T, F, F}},
		{"ratio 0.25 of 7 demotes 1", []float32{3, 2, 9, 9, 9, 9, 9}, 4, 0.25, []bool{T, F, T, T, T, T, T}},
	} {
		got := MixedPrecision{}.Plan(tc.scores, tc.sealable, tc.ratio)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// attnState is a one-layer State with two query heads on one KV head and
// the given attention sums over n tokens at positions 0…n−1.
func attnState(sum []float32) *State {
	pos := make([]int, len(sum))
	for j := range pos {
		pos[j] = j
	}
	return &State{Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 1, Positions: [][]int{pos},
		Obs: &model.Observer{AttnSum: [][][]float32{{sum}}}}
}

// TestMixedScores: on the same attention sums (two query heads, 6 prompt
// queries), the normalized score keeps the later tokens 4 and 5, which
// fewer queries could see, in high precision with the early token 0 that
// got the most attention in all; tokens appended after the observed pass
// score +Inf. MiKV with another importance scorer uses it.
func TestMixedScores(t *testing.T) {
	sum := []float32{3, 2, 1.5, 1, 1.2, 0.9}
	inf := float32(math.Inf(1))
	norm := []float32{3. / 2 / 6, 2. / 2 / 5, 1.5 / 2 / 4, 1. / 2 / 3, 1.2 / 2 / 2, 0.9 / 2 / 1}
	for _, tc := range []struct {
		name   string
		scorer Scorer
		sum    []float32
		want   []float32
	}{
		{"zipcache", ZipCache{}, sum, norm},
		{"mikv", MiKV{}, sum, norm},
		{"mikv with streaming_llm", MiKV{Importance: StreamingLLM{Sink: 1}}, sum, []float32{1 << 30, 1, 2, 3, 4, 5}},
		{"zipcache unobserved tokens", ZipCache{}, sum[:4], []float32{3. / 2 / 4, 2. / 2 / 3, 1.5 / 2 / 2, 1. / 2 / 1, inf, inf}},
	} {
		st := attnState(tc.sum)
		st.Positions[0] = []int{0, 1, 2, 3, 4, 5}
		got := tc.scorer.Score(st)[0]
		for j := range tc.want {
			if math.Abs(float64(got[j]-tc.want[j])) > 1e-6 && got[j] != tc.want[j] {
				t.Errorf("%s: scores %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
	zip := MixedPrecision{}.Plan(ZipCache{}.Score(attnState(sum))[0], 6, 0.5)
	if !reflect.DeepEqual(zip, []bool{true, false, false, false, true, true}) {
		t.Errorf("high precision at half: %v", zip)
	}
}

func TestMixedPressesRegistered(t *testing.T) {
	for _, name := range []string{"mikv", "zipcache"} {
		p, err := Parse(name, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Budget.(Applier); !ok || p.Ratio != 0.5 || !p.Scorer.Needs().Attention {
			t.Errorf("%s: budget %T, ratio %v, needs %+v", name, p.Budget, p.Ratio, p.Scorer.Needs())
		}
	}
}
