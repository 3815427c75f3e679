package press

import (
	"sort"

	"github.com/kvserve/kvserve/compute"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// GlobalLocal is EMS's token importance: a global part, the attention each
// token received from every prefill query (H2O's statistic, recorded by the
// forward pass) divided by the number of queries that could see it, so the
// causal mask no longer favours early tokens; and a local part, the
// attention of the last Window queries (post-RoPE) averaged over the
// window, as in SnapKV. Each part is normalised to sum 1 over the head's
// tokens before the window and the two are added; both are averaged over
// the query heads of the GQA group. The window itself is always kept.
// Li et al., "EMS: Adaptive Evict-then-Merge Strategy for Head-wise KV
// Cache Compression Based on Global-Local Importance" (arXiv:2412.08521).
//
// Choices (ours, where the paper leaves room or we could not match it):
// the two parts are added with equal weight after normalisation, no
// pooling smooths them, and without recorded attention sums (or after an
// earlier compression changed the head) the global part is left out.
type GlobalLocal struct{ Window int }

// Needs implements Scorer: the window's queries and attention sums.
func (p GlobalLocal) Needs() Needs { return Needs{Window: p.Window, Attention: true} }

// Score implements Scorer.
func (p GlobalLocal) Score(s *State) [][]float32 {
	group := s.Heads / s.KVHeads
	out := make([][]float32, s.KVHeads)
	for g := range out {
		n := s.Tokens(g)
		win := 0
		if s.Obs != nil && s.Layer < len(s.Obs.Queries) {
			win = min(p.Window, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
		}
		out[g] = make([]float32, n)
		if n <= win {
			continue
		}
		pre := n - win
		global := p.global(s, g, pre)
		local := make([]float32, pre)
		for hh := g * group; hh < (g+1)*group && win > 0; hh++ {
			for _, row := range windowAttention(s, hh, win) {
				for j := range local {
					local[j] += row[j]
				}
			}
		}
		normalise(global)
		normalise(local)
		for j := range pre {
			out[g][j] = global[j] + local[j]
		}
		padMax(out[g], pre)
	}
	return padLayer(out)
}

// global returns the mean attention each of the first pre tokens of head g
// received, or zeros when the sums do not describe the head.
func (GlobalLocal) global(s *State, g, pre int) []float32 {
	out := make([]float32, pre)
	if s.Obs == nil || s.Layer >= len(s.Obs.AttnSum) || g >= len(s.Obs.AttnSum[s.Layer]) {
		return out
	}
	sum := s.Obs.AttnSum[s.Layer][g]
	if len(sum) != s.Tokens(g) {
		return out
	}
	last := s.Positions[g][s.Tokens(g)-1]
	for j := range out {
		out[j] = sum[j] / float32(last-s.Positions[g][j]+1)
	}
	return out
}

// normalise scales x to sum 1 (left as it is when its sum is not positive).
func normalise(x []float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	if sum <= 0 {
		return
	}
	for i := range x {
		x[i] = float32(float64(x[i]) / sum)
	}
}

// EMS is the Evict-then-Merge budget of Li et al., "EMS: Adaptive
// Evict-then-Merge Strategy for Head-wise KV Cache Compression Based on
// Global-Local Importance" (arXiv:2412.08521). Each head keeps
// k = ⌊n·(1 − ratio)⌋ tokens, ranked by their GlobalLocal scores: the top
// k − c stay as they are, the next c = ⌊k·CentreShare⌋ become class
// centres, and every other token is evicted, then assigned to the centre
// whose key is most cosine-similar to its own (post-RoPE keys, as cached)
// when that similarity reaches Threshold, or else to the zero class,
// which drops it. A centre with members becomes the importance-weighted
// mean of its own and its members' keys and values,
//
//	c ← Σ sᵢ·xᵢ / Σ sᵢ   over the centre and its members,
//
// and keeps its position (the mean of rotated keys is not rotated again).
// So a head whose evicted tokens are redundant (similar to a centre)
// merges them, and a sparse head drops them: the head-wise adaptivity EMS
// aims at, with one rule for both.
//
// Choices (ours): centres are kept tokens, the ones ranked just below the
// untouched top, rather than new points; the weights are the scores (with
// a floor so a zero score still counts); the zero class is a similarity
// threshold. Memory: the head keeps k tokens, exactly as an eviction
// budget, and KeepMergedKV frees the rest.
type EMS struct {
	// CentreShare is the fraction of each head's kept tokens that act as
	// class centres (0.25 by default).
	CentreShare float64
	// Threshold is the least key cosine similarity at which an evicted
	// token joins a centre (0.5 by default).
	Threshold float32
}

func init() {
	register("ems", func() (Scorer, Budget) {
		return GlobalLocal{Window: 32}, EMS{CentreShare: 0.25, Threshold: 0.5}
	})
}

// Select implements Budget: the top ⌊n·(1 − ratio)⌋ by score, without
// merging (what a caller without Apply gets).
func (EMS) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return Uniform{}.Select(scores, layer, layers, ratio)
}

// ApplyPress implements Applier.
func (e EMS) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	for l := range m.Config.Layers {
		if err := e.ApplyLayer(p, m, seq, obs, l); err != nil {
			return err
		}
	}
	return nil
}

// PerLayer implements LayerApplier: each layer is merged on its own.
func (EMS) PerLayer() bool { return true }

// ApplyLayer implements LayerApplier.
func (e EMS) ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	var scores [][]float32
	return applyKVMergesLayer(p, m, seq, obs, l, func(st *State, g int) kvMerge {
		if scores == nil {
			scores = p.Scorer.Score(st)
		}
		return e.merge(st, g, scores[g], p.Ratio)
	})
}

// merge is one head's evict-then-merge.
func (e EMS) merge(st *State, g int, score []float32, ratio float64) kvMerge {
	n := st.Tokens(g)
	k := int(float64(n) * (1 - ratio))
	c := int(float64(k) * e.CentreShare)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return score[order[a]] > score[order[b]] })
	keep := append([]int(nil), order[:k]...)
	sort.Ints(keep)
	centres := order[k-c : k]
	into := e.assign(st, g, centres, order[k:])
	return kvMerge{keep: keep}.withCentres(st, g, score, centres, into)
}

// assign returns, for each evicted token, the index into centres of the
// class it joins, or −1 for the zero class.
func (e EMS) assign(st *State, g int, centres, evicted []int) map[int]int {
	into := make(map[int]int, len(evicted))
	units := make([][]float32, len(centres))
	for i, j := range centres {
		units[i], _ = kvUnit(st.Key(g, j))
	}
	for _, j := range evicted {
		u, nk := kvUnit(st.Key(g, j))
		best, bi := float32(-2), -1
		for i, c := range units {
			if s := compute.Dot(u, c); s > best {
				best, bi = s, i
			}
		}
		if nk == 0 || best < e.Threshold {
			bi = -1
		}
		into[j] = bi
	}
	return into
}

// withCentres sets the merged key and value of every centre that has
// members.
func (r kvMerge) withCentres(st *State, g int, score []float32, centres []int, into map[int]int) kvMerge {
	d := st.HeadDim
	members := make([][]int, len(centres))
	for j, i := range into {
		if i >= 0 {
			members[i] = append(members[i], j)
		}
	}
	at := make(map[int]int, len(r.keep))
	for i, j := range r.keep {
		at[j] = i
	}
	for i, c := range centres {
		if len(members[i]) == 0 {
			continue
		}
		if r.keys == nil {
			r.keys, r.values = make([][]float32, len(r.keep)), make([][]float32, len(r.keep))
		}
		sort.Ints(members[i]) // a fixed summation order
		k, v := make([]float64, d), make([]float64, d)
		var wsum float64
		for _, j := range append([]int{c}, members[i]...) {
			w := max(float64(score[j]), 1e-6)
			wsum += w
			for x := range d {
				k[x] += w * float64(st.Key(g, j)[x])
				v[x] += w * float64(st.Value(g, j)[x])
			}
		}
		r.keys[at[c]], r.values[at[c]] = make([]float32, d), make([]float32, d)
		for x := range d {
			r.keys[at[c]][x] = float32(k[x] / wsum)
			r.values[at[c]][x] = float32(v[x] / wsum)
		}
	}
	return r
}
