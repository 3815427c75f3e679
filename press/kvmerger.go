package press

import (
	"math"
	"sort"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// KVMerger merges runs of consecutive tokens whose keys are alike into
// one entry each. Wang et al., "Model Tells You Where to Merge: Adaptive
// KV Cache Merging for LLMs on Long-Context Tasks" (arXiv:2407.08454).
//
// Per head, the links between neighbouring tokens (j, j+1) outside the
// first Sink and last Recent tokens are ranked by the cosine similarity of
// their keys, and the most similar are joined, most similar first, until
// the head is down to ⌊n·(1 − ratio)⌋ entries: each merging set is thus a
// run of consecutive tokens, and the similarity threshold is the one the
// budget sets (the paper's constrained clustering with its threshold
// chosen by the budget). Links below MinSimilarity are never joined; when
// they run out, the entries with the lowest scores are evicted instead. In
// each set the pivot is the token with the highest score (SnapKV's window
// attention here, the paper's accumulated attention being what prefill
// gives), and the set becomes one token at the pivot's position whose key
// and value are the Gaussian-kernel averages
//
//	k ← Σ w_i·k_i / Σ w_i,  v ← Σ w_i·v_i / Σ w_i,  w_i = exp(−‖k_i − k_p‖² / 2σ²),
//
// with σ² the set's mean squared key distance to the pivot (ours: the
// paper leaves σ as a tuned constant).
type KVMerger struct {
	Sink, Recent  int
	MinSimilarity float32
}

func init() {
	register("kvmerger", func() (Scorer, Budget) {
		return SnapKV{Window: 64, Kernel: 5}, KVMerger{Sink: 4, Recent: 64}
	})
}

// Select implements Budget: the top ⌊n·(1 − ratio)⌋ by score, without
// merging (what a caller without Apply gets).
func (KVMerger) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return Uniform{}.Select(scores, layer, layers, ratio)
}

// ApplyPress implements Applier.
func (b KVMerger) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	for l := range m.Config.Layers {
		if err := b.ApplyLayer(p, m, seq, obs, l); err != nil {
			return err
		}
	}
	return nil
}

// PerLayer implements LayerApplier: each layer is merged on its own.
func (KVMerger) PerLayer() bool { return true }

// ApplyLayer implements LayerApplier.
func (b KVMerger) ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	var scores [][]float32
	return applyKVMergesLayer(p, m, seq, obs, l, func(st *State, g int) kvMerge {
		if scores == nil {
			scores = p.Scorer.Score(st)
		}
		return b.merge(st, g, scores[g], int(float64(st.Tokens(g))*(1-p.Ratio)))
	})
}

// merge reduces head g of s to k entries.
func (b KVMerger) merge(s *State, g int, score []float32, k int) kvMerge {
	n := s.Tokens(g)
	if k >= n {
		return kvMerge{keep: span0(n)}
	}
	lo, hi := min(b.Sink, n), max(min(b.Sink, n), n-b.Recent) // mergeable: [lo, hi)
	type link struct {
		j   int
		sim float32
	}
	var links []link
	for j := lo; j+1 < hi; j++ {
		if c := kvCos(s.Key(g, j), s.Key(g, j+1)); c >= b.MinSimilarity {
			links = append(links, link{j, c})
		}
	}
	sort.SliceStable(links, func(a, c int) bool { return links[a].sim > links[c].sim })
	joined := make([]bool, n) // joined[j]: j and j+1 are one set
	excess := n - k
	for _, l := range links {
		if excess == 0 {
			break
		}
		joined[l.j] = true
		excess--
	}
	// Sets as runs [start, end), each with its pivot.
	type set struct{ start, end, pivot int }
	var sets []set
	for j := 0; j < n; {
		e := j + 1
		for e < n && joined[e-1] {
			e++
		}
		p := j
		for i := j; i < e; i++ {
			if score[i] > score[p] {
				p = i
			}
		}
		sets = append(sets, set{j, e, p})
		j = e
	}
	if excess > 0 { // too few similar links: evict the lowest-scored sets
		order := make([]int, 0, len(sets))
		for i, st := range sets {
			if st.start >= lo && st.end <= hi {
				order = append(order, i)
			}
		}
		sort.SliceStable(order, func(a, c int) bool { return score[sets[order[a]].pivot] < score[sets[order[c]].pivot] })
		drop := map[int]bool{}
		for _, i := range order[:min(excess, len(order))] {
			drop[i] = true
		}
		kept := sets[:0]
		for i, st := range sets {
			if !drop[i] {
				kept = append(kept, st)
			}
		}
		sets = kept
	}
	out := kvMerge{keep: make([]int, len(sets))}
	for i, st := range sets {
		out.keep[i] = st.pivot
		if st.end-st.start == 1 {
			continue
		}
		key, val := gaussianMerge(s, g, st.start, st.end, st.pivot)
		if out.keys == nil {
			out.keys, out.values = make([][]float32, len(sets)), make([][]float32, len(sets))
		}
		out.keys[i], out.values[i] = key, val
	}
	return out
}

// gaussianMerge returns the Gaussian-kernel average of the keys and values
// of tokens [from, to) of head g around the pivot's key.
func gaussianMerge(s *State, g, from, to, pivot int) ([]float32, []float32) {
	d := s.HeadDim
	kp := s.Key(g, pivot)
	dist := make([]float64, to-from)
	var mean float64
	for i := from; i < to; i++ {
		var sq float64
		for c, x := range s.Key(g, i) {
			e := float64(x - kp[c])
			sq += e * e
		}
		dist[i-from] = sq
		mean += sq / float64(to-from-1) // the pivot's own 0 left out
	}
	key, val := make([]float64, d), make([]float64, d)
	var wsum float64
	for i := from; i < to; i++ {
		w := 1.0
		if mean > 0 {
			w = math.Exp(-dist[i-from] / (2 * mean))
		}
		wsum += w
		for c := range d {
			key[c] += w * float64(s.Key(g, i)[c])
			val[c] += w * float64(s.Value(g, i)[c])
		}
	}
	k32, v32 := make([]float32, d), make([]float32, d)
	for c := range d {
		k32[c], v32[c] = float32(key[c]/wsum), float32(val[c]/wsum)
	}
	return k32, v32
}
