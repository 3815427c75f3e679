package press

import (
	"sort"

	"github.com/kvserve/kvserve/compute"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Chelsea clusters each head's cached tokens and stores one centroid per
// cluster: Hu et al., "Efficient Long-Context LLM Inference via KV Cache
// Clustering" (arXiv:2506.11418). The sequence is cut into chunks of Chunk
// tokens; inside a chunk, Chunked Soft Matching splits the tokens by
// alternating index into a source set (even) and a destination set (odd),
// pairs every source with its most cosine-similar destination by key, and
// merges the best-matched pairs. A cluster's key and value are the means
// of its members' keys and values (post-RoPE keys, as cached: a mean of
// rotated keys, never rotated again), stored in the token of the
// destination, whose position the cluster keeps.
//
// Choices (ours, where the paper leaves room): the head removes
// n − ⌊n·(1 − ratio)⌋ tokens, shared among chunks in proportion to their
// length; a chunk that must lose more than a round of matching can (half
// its clusters) matches again over its clusters (centroid keys, sizes
// carried), so any ratio below 1 is reached; a tail shorter than half a
// chunk joins the chunk before it; the first Sink = 4 tokens (attention
// sinks) and the last Recent = 64 (one chunk: in online use the newest
// chunk is not yet full) stay exact unless the others cannot lose enough
// (a chunk of k tokens loses at most k − 1), in which case every token may
// merge; a centroid counts once in the softmax (no size bias on its
// score). On the bundled model the recent chunk is what matters: without
// it the logits' cosine to the full cache's fell from 0.999 to 0.91 at
// ratio 0.5. Memory: the head keeps ⌊n·(1 − ratio)⌋ tokens, and
// KeepMergedKV frees the rest.
type Chelsea struct {
	// Chunk is the tokens per chunk (64 by default).
	Chunk int
	// Sink and Recent are how many of the first and of the last tokens
	// never merge, as long as the others can reach the ratio.
	Sink, Recent int
}

func init() {
	register("chelsea", func() (Scorer, Budget) { c := Chelsea{Chunk: 64, Sink: 4, Recent: 64}; return c, c })
}

// Needs implements Scorer: keys only.
func (Chelsea) Needs() Needs { return Needs{} }

// Score implements Scorer for callers that only evict: minus a token's
// largest key similarity to its neighbours, so the most redundant tokens
// go first.
func (Chelsea) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	for g := range out {
		n := s.Tokens(g)
		out[g] = make([]float32, n)
		for j := range n {
			best := float32(-1)
			for _, o := range []int{j - 1, j + 1} {
				if o >= 0 && o < n {
					best = max(best, kvCos(s.Key(g, j), s.Key(g, o)))
				}
			}
			out[g][j] = -best
		}
	}
	return out
}

// Select implements Budget: the top ⌊n·(1 − ratio)⌋ by Score, without
// merging (what a caller without Apply gets).
func (Chelsea) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return Uniform{}.Select(scores, layer, layers, ratio)
}

// ApplyPress implements Applier.
func (c Chelsea) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	return applyKVMerges(p, m, seq, obs, func(st *State, g int) kvMerge { return c.merge(st, g, p.Ratio) })
}

// PerLayer implements LayerApplier: each layer is merged on its own.
func (Chelsea) PerLayer() bool { return true }

// ApplyLayer implements LayerApplier.
func (c Chelsea) ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	return applyKVMergesLayer(p, m, seq, obs, l, func(st *State, g int) kvMerge { return c.merge(st, g, p.Ratio) })
}

// cluster is a set of a head's tokens merged into one.
type cluster struct {
	rep    int       // the token whose slot (and position) it takes
	size   int       // tokens in it
	k, v   []float64 // sums of keys and values
	merged bool      // more than one token
}

func (c *cluster) key() []float32 {
	out := make([]float32, len(c.k))
	for i, x := range c.k {
		out[i] = float32(x / float64(c.size))
	}
	return out
}

func (c *cluster) value() []float32 {
	out := make([]float32, len(c.v))
	for i, x := range c.v {
		out[i] = float32(x / float64(c.size))
	}
	return out
}

// merge clusters head g chunk by chunk.
func (c Chelsea) merge(st *State, g int, ratio float64) kvMerge {
	n := st.Tokens(g)
	remove := n - int(float64(n)*(1-ratio))
	chunk := max(2, c.Chunk)
	a, b := c.region(n, remove, chunk)
	var kept []*cluster
	for j := range n {
		if j < a || j >= b {
			kept = append(kept, newCluster(st, g, j))
		}
	}
	done := 0
	for lo, hi := a, a; lo < b; lo = hi {
		hi = min(b, lo+chunk)
		if b-hi < chunk/2 { // a short tail joins this chunk
			hi = b
		}
		// This chunk's share: what the tokens up to hi owe, less what
		// earlier chunks removed.
		r := min(hi-lo-1, remove*(hi-a)/(b-a)-done)
		cl := make([]*cluster, 0, hi-lo)
		for j := lo; j < hi; j++ {
			cl = append(cl, newCluster(st, g, j))
		}
		cl = softMatch(cl, r)
		done += hi - lo - len(cl)
		kept = append(kept, cl...)
	}
	sort.Slice(kept, func(a, b int) bool { return kept[a].rep < kept[b].rep })
	out := kvMerge{keep: make([]int, len(kept))}
	for i, cl := range kept {
		out.keep[i] = cl.rep
		if !cl.merged {
			continue
		}
		if out.keys == nil {
			out.keys, out.values = make([][]float32, len(kept)), make([][]float32, len(kept))
		}
		out.keys[i], out.values[i] = cl.key(), cl.value()
	}
	return out
}

// region returns the tokens [a, b) that may merge: all but the first Sink
// and the last Recent, or all when those few could not lose remove tokens
// (a chunk of k tokens loses at most k − 1).
func (c Chelsea) region(n, remove, chunk int) (a, b int) {
	a, b = min(c.Sink, n), max(min(c.Sink, n), n-c.Recent)
	if b-a-(b-a+chunk-1)/chunk < remove {
		return 0, n
	}
	return a, b
}

func newCluster(st *State, g, j int) *cluster {
	k, v := st.Key(g, j), st.Value(g, j)
	c := &cluster{rep: j, size: 1, k: make([]float64, len(k)), v: make([]float64, len(v))}
	for i := range k {
		c.k[i], c.v[i] = float64(k[i]), float64(v[i])
	}
	return c
}

// softMatch removes r clusters from cl (in token order) by rounds of
// alternating bipartite matching: even-indexed clusters are sources, odd
// ones destinations; each source finds its most similar destination by
// centroid key, and the r best-matched sources (at most all of them in a
// round) merge into their destinations. It returns the clusters left, in
// token order.
func softMatch(cl []*cluster, r int) []*cluster {
	for r > 0 && len(cl) > 1 {
		type match struct {
			src, dst int
			sim      float32
		}
		units := make([][]float32, len(cl))
		for i, c := range cl {
			units[i], _ = kvUnit(c.key())
		}
		var ms []match
		for a := 0; a < len(cl); a += 2 {
			best := match{src: a, dst: -1}
			for b := 1; b < len(cl); b += 2 {
				if s := compute.Dot(units[a], units[b]); best.dst < 0 || s > best.sim {
					best.dst, best.sim = b, s
				}
			}
			if best.dst >= 0 {
				ms = append(ms, best)
			}
		}
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].sim > ms[j].sim })
		ms = ms[:min(r, len(ms))]
		gone := make([]bool, len(cl))
		for _, m := range ms {
			dst, src := cl[m.dst], cl[m.src]
			for i := range dst.k {
				dst.k[i] += src.k[i]
				dst.v[i] += src.v[i]
			}
			dst.size += src.size
			dst.merged = true
			gone[m.src] = true
		}
		next := cl[:0:0]
		for i, c := range cl {
			if !gone[i] {
				next = append(next, c)
			}
		}
		r -= len(ms)
		cl = next
	}
	return cl
}
