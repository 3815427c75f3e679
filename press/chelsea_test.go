package press

import (
	"math"
	"slices"
	"testing"
)

// mgHead is one KV head of 2-d tokens at positions 0, 1, 2, …, with
// value i·(1, 1) for token i (so a merged value tells its members).
func mgHead(keys ...float32) *State {
	n := len(keys) / 2
	vals := make([]float32, 2*n)
	pos := make([]int, n)
	for i := range n {
		vals[2*i], vals[2*i+1] = float32(i), float32(i)
		pos[i] = i
	}
	return &State{Heads: 1, KVHeads: 1, HeadDim: 2, Layers: 1,
		Keys: [][]float32{keys}, Values: [][]float32{vals}, Positions: [][]int{pos}}
}

// mgMean returns the mean key (or value) of the given tokens of head 0.
func mgMean(s *State, key bool, tokens ...int) []float32 {
	out := make([]float32, s.HeadDim)
	for _, j := range tokens {
		x := s.Value(0, j)
		if key {
			x = s.Key(0, j)
		}
		for c := range out {
			out[c] += x[c] / float32(len(tokens))
		}
	}
	return out
}

func mgClose(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			return false
		}
	}
	return true
}

func TestChelseaClusters(t *testing.T) {
	// Six tokens, one chunk: sources t0, t2, t4 and destinations t1, t3, t5.
	//
	//	t0 (1, 0)      best t1 (cos ≈ 1)
	//	t1 (1, 0.01)
	//	t2 (0, 1)      best t3 (cos 1)
	//	t3 (0, 1.02)
	//	t4 (−1, 0)     best t3 (cos 0)
	//	t5 (0.7, 0.7)
	six := []float32{1, 0, 1, 0.01, 0, 1, 0, 1.02, -1, 0, 0.7, 0.7}
	// Eight tokens in two chunks of four: t3 and t4 are equal but lie in
	// different chunks, so they never merge; inside each chunk the most
	// similar source/destination pair merges (t0 → t1, t6 → t7).
	eight := []float32{1, 0, 0.99, 0.1, 0, 1, 5, 5, 5, 5, -1, 0, 0.3, -1, 0.31, -1}
	cases := []struct {
		name     string
		keys     []float32
		c        Chelsea
		ratio    float64
		keep     []int
		clusters map[int][]int // kept token → its members (merged ones only)
	}{
		{"one round", six, Chelsea{Chunk: 64}, 2.0 / 6, []int{1, 3, 4, 5}, map[int][]int{1: {0, 1}, 3: {2, 3}}},
		{"three merge into t3 over two rounds", six, Chelsea{Chunk: 64}, 4.0 / 6, []int{1, 3}, map[int][]int{1: {0, 1}, 3: {2, 3, 4, 5}}},
		{"only the most similar pair", six, Chelsea{Chunk: 64}, 0.1, []int{0, 1, 3, 4, 5}, map[int][]int{3: {2, 3}}},
		{"nothing removed", six, Chelsea{Chunk: 64}, 0, []int{0, 1, 2, 3, 4, 5}, nil},
		{"chunks keep apart", eight, Chelsea{Chunk: 4}, 0.25, []int{1, 2, 3, 4, 5, 7}, map[int][]int{1: {0, 1}, 7: {6, 7}}},
		// Only t1–t3 may merge: sources t1, t3, destination t2.
		{"sink and recent protected", six, Chelsea{Chunk: 64, Sink: 1, Recent: 2}, 0.1, []int{0, 1, 2, 4, 5}, map[int][]int{2: {2, 3}}},
		// Three tokens cannot lose three: every token may merge again.
		{"protection yields to the ratio", six, Chelsea{Chunk: 64, Sink: 1, Recent: 2}, 0.5, []int{1, 3, 5}, map[int][]int{1: {0, 1}, 3: {2, 3, 4}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mgHead(c.keys...)
			r := c.c.merge(s, 0, c.ratio)
			if !slices.Equal(r.keep, c.keep) {
				t.Fatalf("keeps %v, want %v", r.keep, c.keep)
			}
			for i, j := range r.keep {
				members, merged := c.clusters[j]
				if !merged {
					if r.keys != nil && (r.keys[i] != nil || r.values[i] != nil) {
						t.Fatalf("token %d changed without merging", j)
					}
					continue
				}
				if !mgClose(r.keys[i], mgMean(s, true, members...)) || !mgClose(r.values[i], mgMean(s, false, members...)) {
					t.Fatalf("token %d holds %v / %v, want the mean of %v: %v / %v", j, r.keys[i], r.values[i],
						members, mgMean(s, true, members...), mgMean(s, false, members...))
				}
			}
		})
	}
}

func TestChelseaKeepsTheBudget(t *testing.T) {
	keys := make([]float32, 2*300)
	for i := range 300 {
		a := float64(i*i%97) / 10
		keys[2*i], keys[2*i+1] = float32(math.Cos(a)), float32(math.Sin(a))
	}
	s := mgHead(keys...)
	for _, ratio := range []float64{0.25, 0.5, 0.75, 0.875} {
		for _, chunk := range []int{16, 64, 100} {
			r := Chelsea{Chunk: chunk}.merge(s, 0, ratio)
			if want := int(300 * (1 - ratio)); len(r.keep) != want {
				t.Errorf("ratio %v chunk %d: keeps %d, want %d", ratio, chunk, len(r.keep), want)
			}
			if !slices.IsSorted(r.keep) {
				t.Errorf("ratio %v chunk %d: kept indices out of order", ratio, chunk)
			}
		}
	}
}
