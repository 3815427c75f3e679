package semcache

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// clustered returns n unit vectors of dim floats around a few random
// centres, the shape embeddings of related questions have.
func clustered(rng *rand.Rand, n, dim, centres int, spread float64) [][]float32 {
	cs := make([][]float32, centres)
	for i := range cs {
		cs[i] = randUnit(rng, dim, nil, 0)
	}
	out := make([][]float32, n)
	for i := range out {
		out[i] = randUnit(rng, dim, cs[rng.IntN(centres)], spread)
	}
	return out
}

func randUnit(rng *rand.Rand, dim int, centre []float32, spread float64) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * spread)
		if centre == nil {
			v[i] = float32(rng.NormFloat64())
		} else {
			v[i] += centre[i]
		}
	}
	Normalize(v)
	return v
}

func bruteForce(vecs [][]float32, deleted map[int]bool, q []float32, k int) []int {
	ids := make([]int, 0, len(vecs))
	for i := range vecs {
		if !deleted[i] {
			ids = append(ids, i)
		}
	}
	sort.Slice(ids, func(a, b int) bool { return dot(q, vecs[ids[a]]) > dot(q, vecs[ids[b]]) })
	return ids[:min(k, len(ids))]
}

func TestIndexRecallAt10(t *testing.T) {
	for _, tc := range []struct {
		name            string
		n, dim, centres int
		spread          float64
		deleteEvery     int
	}{
		{"uniform", 1500, 24, 0, 0, 0},
		{"clustered", 1500, 48, 30, 0.05, 0},
		{"clustered with deletions", 1500, 48, 30, 0.05, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var vecs [][]float32
			if tc.centres == 0 {
				for range tc.n {
					vecs = append(vecs, randUnit(rng, tc.dim, nil, 0))
				}
			} else {
				vecs = clustered(rng, tc.n, tc.dim, tc.centres, tc.spread)
			}
			x := NewIndex(tc.dim, 16, 100)
			for _, v := range vecs {
				x.Add(v)
			}
			deleted := map[int]bool{}
			if tc.deleteEvery > 0 {
				for i := 0; i < len(vecs); i += tc.deleteEvery {
					x.Remove(i)
					deleted[i] = true
				}
			}
			if want := len(vecs) - len(deleted); x.Len() != want {
				t.Fatalf("Len = %d, want %d", x.Len(), want)
			}
			found, total := 0, 0
			for range 100 {
				q := randUnit(rng, tc.dim, vecs[rng.IntN(len(vecs))], 0.1)
				got := x.Search(q, 10)
				gotSet := map[int]bool{}
				for _, m := range got {
					if deleted[m.ID] {
						t.Fatalf("search returned deleted id %d", m.ID)
					}
					gotSet[m.ID] = true
				}
				for _, id := range bruteForce(vecs, deleted, q, 10) {
					total++
					if gotSet[id] {
						found++
					}
				}
			}
			recall := float64(found) / float64(total)
			t.Logf("recall@10 = %.4f", recall)
			if recall < 0.95 {
				t.Fatalf("recall@10 = %.4f, want ≥ 0.95", recall)
			}
		})
	}
}

func TestIndexEmptyAndSmall(t *testing.T) {
	x := NewIndex(4, 0, 0)
	if got := x.Search([]float32{1, 0, 0, 0}, 3); got != nil {
		t.Fatalf("empty index returned %v", got)
	}
	a := []float32{1, 0, 0, 0}
	b := []float32{0, 1, 0, 0}
	x.Add(a)
	x.Add(b)
	got := x.Search([]float32{0.9, 0.1, 0, 0}, 5)
	if len(got) != 2 || got[0].ID != 0 || got[1].ID != 1 {
		t.Fatalf("Search = %v, want ids 0 then 1", got)
	}
	x.Remove(0)
	x.Remove(0)
	if got := x.Search(a, 5); len(got) != 1 || got[0].ID != 1 || x.Len() != 1 {
		t.Fatalf("after Remove: %v (len %d)", got, x.Len())
	}
	if math.Abs(float64(dot(a, a))-1) > 1e-6 {
		t.Fatal("dot")
	}
}

// BenchmarkIndexSearch10k times one top-10 search among 10⁴ stored
// vectors of 384 floats (tinychat's hidden size).
func BenchmarkIndexSearch10k(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	vecs := clustered(rng, 10000, 384, 200, 0.05)
	x := NewIndex(384, 16, 100)
	for _, v := range vecs {
		x.Add(v)
	}
	qs := make([][]float32, 256)
	for i := range qs {
		qs[i] = randUnit(rng, 384, vecs[rng.IntN(len(vecs))], 0.1)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x.Search(qs[i%len(qs)], 10)
	}
}
