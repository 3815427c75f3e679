package semcache

import (
	"math"
	"math/rand/v2"
)

// Index is a hierarchical navigable small world graph (Malkov and
// Yashunin) over unit vectors, searched by cosine similarity (the dot
// product). Each node lives on layers 0…level, level drawn with
// P(level ≥ l) = M^-l; layer l links each node to at most M others (2M on
// layer 0), chosen with the paper's diversity heuristic. Removal marks a
// node deleted: searches pass through it but never return it. An Index is
// not safe for concurrent use; the Cache locks around it.
type Index struct {
	dim            int
	m, efConstruct int
	// EfSearch is the candidate list length of a search (at least k).
	EfSearch int
	ml       float64
	rng      *rand.Rand
	nodes    []hnswNode
	entry    int32
	maxLevel int
	live     int
	// Scratch space of searches: visit marks and heaps.
	visited         []uint32
	epoch           uint32
	nearBuf, farBuf []cand
}

type hnswNode struct {
	vec     []float32
	links   [][]int32 // per layer
	deleted bool
}

// NewIndex returns an empty index of vectors of dim floats with M links per
// node per layer (16 if 0) and a construction candidate list of
// efConstruct (200 if 0).
func NewIndex(dim, m, efConstruct int) *Index {
	if m <= 1 {
		m = 16
	}
	if efConstruct <= 0 {
		efConstruct = 200
	}
	return &Index{dim: dim, m: m, efConstruct: efConstruct, EfSearch: 64, ml: 1 / math.Log(float64(m)),
		rng: rand.New(rand.NewPCG(15, uint64(dim))), entry: -1}
}

// Len returns the number of live (not deleted) vectors.
func (x *Index) Len() int { return x.live }

// Dim returns the vector length.
func (x *Index) Dim() int { return x.dim }

// dot returns the cosine similarity of unit vectors.
func dot(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	n := len(a) &^ 3
	b = b[:len(a)]
	for i := 0; i < n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for i := n; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// Add inserts vec (unit length, Dim floats; the index keeps it) and returns
// its id, the number of vectors added before it.
func (x *Index) Add(vec []float32) int {
	id := int32(len(x.nodes))
	level := int(math.Floor(-math.Log(1-x.rng.Float64()) * x.ml))
	level = min(level, 16)
	n := hnswNode{vec: vec, links: make([][]int32, level+1)}
	x.nodes = append(x.nodes, n)
	x.live++
	if x.entry < 0 {
		x.entry, x.maxLevel = id, level
		return int(id)
	}
	ep := x.entry
	for l := x.maxLevel; l > level; l-- {
		ep = x.greedy(vec, ep, l)
	}
	for l := min(level, x.maxLevel); l >= 0; l-- {
		cands := x.searchLayer(vec, []int32{ep}, x.efConstruct, l)
		maxLinks := x.m
		if l == 0 {
			maxLinks = 2 * x.m
		}
		chosen := x.selectNeighbors(vec, cands, x.m)
		x.nodes[id].links[l] = chosen
		for _, nb := range chosen {
			links := append(x.nodes[nb].links[l], id)
			if len(links) > maxLinks {
				links = x.prune(nb, links, maxLinks)
			}
			x.nodes[nb].links[l] = links
		}
		ep = cands[0].id
	}
	if level > x.maxLevel {
		x.entry, x.maxLevel = id, level
	}
	return int(id)
}

// Remove marks id deleted; searches never return it again.
func (x *Index) Remove(id int) {
	if id >= 0 && id < len(x.nodes) && !x.nodes[id].deleted {
		x.nodes[id].deleted = true
		x.live--
	}
}

// Deleted returns how many removed nodes the graph still holds.
func (x *Index) Deleted() int { return len(x.nodes) - x.live }

// Match is one search result.
type Match struct {
	ID         int
	Similarity float32
}

// Search returns the k live vectors most similar to q (unit length), most
// similar first.
func (x *Index) Search(q []float32, k int) []Match {
	if x.entry < 0 || k <= 0 || x.live == 0 {
		return nil
	}
	ep := x.entry
	for l := x.maxLevel; l > 0; l-- {
		ep = x.greedy(q, ep, l)
	}
	ef := max(x.EfSearch, k)
	cands := x.searchLayer(q, []int32{ep}, ef, 0)
	out := make([]Match, 0, k)
	for _, c := range cands {
		if x.nodes[c.id].deleted {
			continue
		}
		out = append(out, Match{ID: int(c.id), Similarity: c.sim})
		if len(out) == k {
			break
		}
	}
	return out
}

// greedy walks layer l from ep to the node most similar to q.
func (x *Index) greedy(q []float32, ep int32, l int) int32 {
	best := dot(q, x.nodes[ep].vec)
	for changed := true; changed; {
		changed = false
		for _, nb := range x.nodes[ep].links[l] {
			if s := dot(q, x.nodes[nb].vec); s > best {
				best, ep, changed = s, nb, true
			}
		}
	}
	return ep
}

type cand struct {
	id  int32
	sim float32
}

// candHeap is a binary heap of candidates; with near, the most similar is
// on top, else the least similar.
type candHeap struct {
	c    []cand
	near bool
}

func (h *candHeap) less(i, j int) bool {
	if h.near {
		return h.c[i].sim > h.c[j].sim
	}
	return h.c[i].sim < h.c[j].sim
}

func (h *candHeap) push(v cand) {
	h.c = append(h.c, v)
	for i := len(h.c) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.c[i], h.c[p] = h.c[p], h.c[i]
		i = p
	}
}

func (h *candHeap) pop() cand {
	top := h.c[0]
	last := len(h.c) - 1
	h.c[0] = h.c[last]
	h.c = h.c[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.less(l, m) {
			m = l
		}
		if r < last && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.c[i], h.c[m] = h.c[m], h.c[i]
		i = m
	}
	return top
}

// searchLayer returns up to ef nodes of layer l most similar to q, most
// similar first, by best-first search from eps.
func (x *Index) searchLayer(q []float32, eps []int32, ef, l int) []cand {
	if len(x.visited) < len(x.nodes) {
		x.visited = append(x.visited, make([]uint32, len(x.nodes)-len(x.visited)+1024)...)
	}
	x.epoch++
	if x.epoch == 0 { // wrapped: clear the marks
		clear(x.visited)
		x.epoch = 1
	}
	mark := x.epoch
	near := candHeap{c: x.nearBuf[:0], near: true}
	far := candHeap{c: x.farBuf[:0]}
	for _, e := range eps {
		c := cand{e, dot(q, x.nodes[e].vec)}
		x.visited[e] = mark
		near.push(c)
		far.push(c)
	}
	for len(near.c) > 0 {
		c := near.pop()
		if len(far.c) >= ef && c.sim < far.c[0].sim {
			break
		}
		for _, nb := range x.nodes[c.id].links[l] {
			if x.visited[nb] == mark {
				continue
			}
			x.visited[nb] = mark
			s := dot(q, x.nodes[nb].vec)
			if len(far.c) < ef || s > far.c[0].sim {
				near.push(cand{nb, s})
				far.push(cand{nb, s})
				if len(far.c) > ef {
					far.pop()
				}
			}
		}
	}
	x.nearBuf = near.c
	out := make([]cand, len(far.c))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = far.pop()
	}
	x.farBuf = far.c
	return out
}

// selectNeighbors picks up to m of cands (most similar first) by the
// diversity heuristic: a candidate is kept only if it is closer to q than
// to every neighbour kept so far; the rest fill remaining places.
func (x *Index) selectNeighbors(q []float32, cands []cand, m int) []int32 {
	out := make([]int32, 0, m)
	var skipped []int32
	for _, c := range cands {
		if len(out) == m {
			break
		}
		good := true
		for _, o := range out {
			if dot(x.nodes[c.id].vec, x.nodes[o].vec) > c.sim {
				good = false
				break
			}
		}
		if good {
			out = append(out, c.id)
		} else {
			skipped = append(skipped, c.id)
		}
	}
	for _, s := range skipped {
		if len(out) == m {
			break
		}
		out = append(out, s)
	}
	return out
}

// prune cuts node id's links to the max best by the same heuristic.
func (x *Index) prune(id int32, links []int32, maxLinks int) []int32 {
	v := x.nodes[id].vec
	cands := make([]cand, len(links))
	for i, nb := range links {
		cands[i] = cand{nb, dot(v, x.nodes[nb].vec)}
	}
	sortCands(cands)
	return x.selectNeighbors(v, cands, maxLinks)
}

func sortCands(c []cand) {
	for i := 1; i < len(c); i++ { // short lists: insertion sort
		for j := i; j > 0 && c[j].sim > c[j-1].sim; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}
