package press

import (
	"math"
	"sort"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// D2O evicts by accumulated attention under per-layer budgets and merges
// evicted tokens back into their nearest kept token when the similarity
// passes an adaptive threshold. Wan et al., "D2O: Dynamic Discriminative
// Operations for Efficient Long-Context Inference of Large Language
// Models" (arXiv:2406.13035).
//
// Layer level: the paper gives layers whose attention is dense more cache
// than layers whose attention is sparse, judged by the variance of the
// attention. Here a layer's sparsity is the coefficient of variation
// (std/mean) of H2O's accumulated attention over its tokens, averaged over
// its KV heads, and the whole cache's budget Σ⌊n·(1 − ratio)⌋ is shared
// out in proportion to 1/(1 + CV) (ours: the paper's exact weighting is a
// hyperparameterised schedule). Each layer is compressed as soon as it is
// computed, so that memory stays bounded: its share is decided from the
// layers so far, the later ones counted at their mean weight (LayerBudget),
// where the paper sees all layers first.
//
// Token level: each head keeps its Sink first and Recent last tokens and
// the rest of its layer's budget by accumulated attention (H2O). Each
// evicted token, in position order, finds the kept token whose key is most
// cosine-similar, s; it merges when s reaches the threshold τ, an
// exponential moving average of the similarities seen, τ ← β·τ + (1−β)·s
// after each decision, started at the mean similarity of the layer's
// evicted tokens (β = Beta, 0.9); the others are dropped. A kept token c
// with merged tokens E becomes, for keys and values alike,
//
//	x_c ← w_c·x_c + Σ_e w_e·x_e,  w_e = exp(s_e)/(Σ exp(s_e') + e),  w_c = e/(Σ exp(s_e') + e),
//
// the paper's weighted merge (its own similarity is 1, hence e = exp 1).
type D2O struct {
	Sink, Recent int
	Beta         float64
}

func init() {
	register("d2o", func() (Scorer, Budget) {
		return ObservedAttention{}, D2O{Sink: 4, Recent: 32, Beta: 0.9}
	})
}

// Select implements Budget: the top ⌊n·(1 − ratio)⌋ by score, without
// layer budgets or merging (what a caller without Apply gets).
func (D2O) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	return Uniform{}.Select(scores, layer, layers, ratio)
}

// ApplyPress implements Applier: ApplyLayer on every layer in turn.
func (b D2O) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	for l := range m.Config.Layers {
		if err := b.ApplyLayer(p, m, seq, obs, l); err != nil {
			return err
		}
	}
	return nil
}

// PerLayer implements LayerApplier: a layer's budget depends only on the
// layers before it.
func (D2O) PerLayer() bool { return true }

// ApplyLayer implements LayerApplier: layer l's budget from the variation
// of layers 0 … l and what the earlier layers kept, then eviction and
// merging.
func (b D2O) ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	c := m.Config
	observed := obs != nil && l < len(obs.AttnSum) && len(obs.AttnSum[l][0]) >= seq.Len(l, 0)
	cv := make([]float64, l+1)
	if observed {
		for i := range cv {
			for g := range c.KVHeads {
				cv[i] += variation(obs.AttnSum[i][g], len(obs.AttnSum[i][g])) / float64(c.KVHeads)
			}
		}
	}
	kept := 0
	for i := range l {
		kept += seq.Len(i, 0)
	}
	budget := b.LayerBudget(cv, seq.Len(l, 0), kept, c.Layers, p.Ratio)
	var scores [][]float32
	return applyKVMergesLayer(p, m, seq, obs, l, func(st *State, g int) kvMerge {
		if scores == nil {
			if observed {
				scores = p.Scorer.Score(st)
			} else { // nothing observed: the most recent tokens rank first
				scores = StreamingLLM{Sink: b.Sink}.Score(st)
			}
			lo, hi := lowHigh(scores)
			for _, sc := range scores {
				protect(sc, b.Sink, b.Recent, lo, hi)
			}
		}
		return b.merge(st, g, topK(scores[g], budget))
	})
}

// lowHigh returns the lowest and highest score of a layer.
func lowHigh(scores [][]float32) (lo, hi float32) {
	first := true
	for _, sc := range scores {
		for _, v := range sc {
			if first {
				lo, hi, first = v, v, false
			}
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	return lo, hi
}

// variation returns the coefficient of variation of H2O's per-token
// attention (the sum over the n − j queries that see token j, averaged).
func variation(sum []float32, n int) float64 {
	n = min(n, len(sum))
	if n < 2 {
		return 0
	}
	x := make([]float64, n)
	var mean float64
	for j := range n {
		x[j] = float64(sum[j]) / float64(n-j)
		mean += x[j] / float64(n)
	}
	var v float64
	for _, a := range x {
		v += (a - mean) * (a - mean) / float64(n)
	}
	if mean <= 0 {
		return 0
	}
	return math.Sqrt(v) / mean
}

// LayerBudget returns the tokens per head of layer l = len(cv) − 1 of
// layers, given the variation cv of layers 0 … l, the layer's n tokens per
// head and the tokens per head the earlier layers kept. The cache's budget
// is ⌊n·(1 − ratio)⌋ per head and layer; layer l takes, of what is left,
// the share w_l/(w_l + (layers − 1 − l)·w̄) with w = 1/(1 + cv) and w̄ the
// mean weight so far standing in for the layers not yet computed (the last
// layer takes the rest), between min(n, Sink + Recent) and n.
func (b D2O) LayerBudget(cv []float64, n, kept, layers int, ratio float64) int {
	l := len(cv) - 1
	left := int(float64(n)*(1-ratio))*layers - kept
	w := 1 / (1 + cv[l])
	var mean float64
	for _, v := range cv {
		mean += 1 / (1 + v) / float64(len(cv))
	}
	x := float64(left) * w / (w + float64(layers-1-l)*mean)
	return max(min(n, b.Sink+b.Recent), min(n, int(math.Round(x))))
}

// merge merges head g's evicted tokens into the kept ones (keep
// ascending) under the EMA threshold.
func (b D2O) merge(s *State, g int, keep []int) kvMerge {
	n := s.Tokens(g)
	if len(keep) == n || len(keep) == 0 {
		return kvMerge{keep: keep}
	}
	kept := make([]bool, n)
	for _, j := range keep {
		kept[j] = true
	}
	type match struct {
		j, into int
		sim     float64
	}
	var ev []match
	var mean float64
	for j := range n {
		if kept[j] {
			continue
		}
		best, bi := math.Inf(-1), 0
		for i, c := range keep {
			if sim := float64(kvCos(s.Key(g, j), s.Key(g, c))); sim > best {
				best, bi = sim, i
			}
		}
		ev = append(ev, match{j, bi, best})
		mean += best
	}
	mean /= float64(len(ev))
	sort.Slice(ev, func(a, c int) bool { return ev[a].j < ev[c].j })
	tau := mean
	members := make([][]match, len(keep))
	for _, e := range ev {
		if e.sim >= tau {
			members[e.into] = append(members[e.into], e)
		}
		tau = b.Beta*tau + (1-b.Beta)*e.sim
	}
	out := kvMerge{keep: keep}
	d := s.HeadDim
	for i, ms := range members {
		if len(ms) == 0 {
			continue
		}
		z := math.E
		for _, e := range ms {
			z += math.Exp(e.sim)
		}
		key, val := make([]float32, d), make([]float32, d)
		wc := float32(math.E / z)
		for c := range d {
			key[c] = wc * s.Key(g, keep[i])[c]
			val[c] = wc * s.Value(g, keep[i])[c]
		}
		for _, e := range ms {
			w := float32(math.Exp(e.sim) / z)
			for c := range d {
				key[c] += w * s.Key(g, e.j)[c]
				val[c] += w * s.Value(g, e.j)[c]
			}
		}
		if out.keys == nil {
			out.keys, out.values = make([][]float32, len(keep)), make([][]float32, len(keep))
		}
		out.keys[i], out.values[i] = key, val
	}
	return out
}
