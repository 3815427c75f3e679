package press

import (
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

// groupQueries records two window queries per query head: q0 for the
// query heads of KV head 0, q1 for those of KV head 1.
func groupQueries(s *State, q0, q1 []float32) *State {
	s.Obs = &model.Observer{Queries: make([][]float32, 1)}
	for range 2 {
		for hh := range s.Heads {
			q := q0
			if hh >= s.Heads/2 {
				q = q1
			}
			s.Obs.Queries[0] = append(s.Obs.Queries[0], q...)
		}
	}
	return s
}

// srhState is 12 tokens: KV head 0's queries read token 5, KV head 1's
// read token 0 (an attention sink).
func srhState() *State {
	keys := make([][]float32, 12)
	for j := range keys {
		keys[j] = []float32{0, 0, 0, 0}
	}
	keys[5][0] = 2
	keys[0][1] = 2
	return groupQueries(handState(keys), []float32{8, 0, 0, 0}, []float32{0, 8, 0, 0})
}

func TestCompressKVSemanticHeads(t *testing.T) {
	cases := []struct {
		name  string
		c     CompressKV
		heads []int
		ratio float64
		want  []int // kept by both KV heads
	}{
		// ⌊12·0.25⌋ = 3: one token and the window.
		{"file prefers head 0", CompressKV{Window: 2, Kernel: 1, Share: 0.5, HeadScores: [][]float64{{0.9, 0.1}}}, []int{0}, 0.75, []int{5, 10, 11}},
		{"file prefers head 1", CompressKV{Window: 2, Kernel: 1, Share: 0.5, HeadScores: [][]float64{{0.1, 0.9}}}, []int{1}, 0.75, []int{0, 10, 11}},
		// On the fly: head 0's attention lies outside the sinks and the
		// window, head 1's on a sink.
		{"on the fly", CompressKV{Window: 2, Kernel: 1, Share: 0.5, Sink: 4}, []int{0}, 0.75, []int{5, 10, 11}},
		// Both heads are SRHs: tokens 0 and 5 both count (⌊12·0.4⌋ = 4).
		{"all heads", CompressKV{Window: 2, Kernel: 1, Share: 1, Sink: 4}, []int{0, 1}, 0.6, []int{0, 5, 10, 11}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := srhState()
			if got := tc.c.SemanticHeads(s); !slices.Equal(got, tc.heads) {
				t.Errorf("semantic heads %v, want %v", got, tc.heads)
			}
			keep := Uniform{}.Select(tc.c.Score(s), 0, 1, tc.ratio)
			for g := range keep {
				if !slices.Equal(keep[g], tc.want) {
					t.Errorf("head %d kept %v, want %v", g, keep[g], tc.want)
				}
			}
		})
	}
}

// spreadState is 16 tokens whose values differ (value j along channel
// j%4); the two window queries either read one key sharply or read all
// keys alike.
func spreadState(sharp bool) *State {
	keys := make([][]float32, 16)
	for j := range keys {
		keys[j] = []float32{0, 0, 0, 0}
	}
	keys[3][0] = 4
	s := handState(keys)
	for g := range 2 {
		for j := range 16 {
			v := s.Value(g, j)
			clear(v)
			v[j%4] = 1
		}
	}
	q := []float32{0, 0, 0, 0}
	if sharp {
		q[0] = 10
	}
	return withQueries(s, q, q)
}

func TestCompressKVLayerError(t *testing.T) {
	b := CompressKVLayers{Window: 2, MinTokens: 32, MaxFactor: 3, Probes: []float64{0.125, 0.25, 0.5}}
	c := CompressKV{Window: 2, Kernel: 1, Share: 1}
	sharp, flat := spreadState(true), spreadState(false)
	es := b.Measure(sharp, c.Score(sharp))
	ef := b.Measure(flat, c.Score(flat))
	if !(ef > 5*es) || es < 0 {
		t.Errorf("error with sharp attention %g, with flat attention %g: want flat ≫ sharp", es, ef)
	}
	// Keeping every token loses nothing.
	all := CompressKVLayers{Window: 2, Probes: []float64{1}}
	if e := all.Measure(flat, c.Score(flat)); e > 1e-6 {
		t.Errorf("error keeping everything %g", e)
	}
	// Nothing observed: no preference.
	flat.Obs = nil
	if e := b.Measure(flat, nil); e != 0 {
		t.Errorf("unobserved error %g", e)
	}
}

func TestCompressKVLayerBudgets(t *testing.T) {
	sc := make([]float32, 100)
	for j := range sc {
		sc[j] = float32(j % 7)
	}
	all := [][][]float32{{sc, sc}, {sc, sc}}
	cases := []struct {
		b        CompressKVLayers
		measures []float64
		ratio    float64
		want     []int
	}{
		// k = 50: 32 each, the other 2·18 = 36 shared 3:1.
		{CompressKVLayers{MinTokens: 32, MaxFactor: 3}, []float64{3, 1}, 0.5, []int{59, 41}},
		// No error measured: uniform.
		{CompressKVLayers{MinTokens: 32, MaxFactor: 3}, []float64{0, 0}, 0.5, []int{50, 50}},
		// k = 25, cap 3·25 = 75: layer 0 takes all 2·20 above the floor.
		{CompressKVLayers{MinTokens: 5, MaxFactor: 3}, []float64{1, 0}, 0.75, []int{45, 5}},
		// The cap binds: ⌊1.5·25⌋ = 37 at most, and a layer without error
		// takes none of the excess.
		{CompressKVLayers{MinTokens: 5, MaxFactor: 1.5}, []float64{1, 0}, 0.75, []int{37, 5}},
	}
	for _, tc := range cases {
		var got []int
		for l := range all {
			keep := tc.b.SelectPlanned(all, l, tc.measures, tc.ratio)
			if len(keep[0]) != len(keep[1]) {
				t.Fatalf("heads of layer %d keep %d and %d", l, len(keep[0]), len(keep[1]))
			}
			got = append(got, len(keep[0]))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v, measures %v, ratio %v: layers keep %v, want %v", tc.b, tc.measures, tc.ratio, got, tc.want)
		}
	}
}
