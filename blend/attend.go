package blend

import (
	"math"
	"slices"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// candidates runs CacheBlend's question pass over an assembly: the tokens
// outside documents are computed over the reused cache (every one through
// the first QuestionLayers layers, then only the last), the question's
// attention ranks the reused tokens, and it returns, ascending, the
// positions that the recompute pass computes: the Widen·Ratio reused
// tokens ranked first (a token's rank is the best of its Window neighbours
// either side, so a line the question reads is taken whole) and every
// token outside documents (the first pass left them unfinished above
// QuestionLayers; they are computed again over the recomputed documents).
// A document sitting where it was cached has exact KV and is never a
// candidate.
func (c CacheBlend) candidates(b *Blender, a *assembly) ([]int, error) {
	n := len(a.tokens)
	reused := make([]bool, n)
	tail := 0
	for _, d := range a.docs {
		tail = max(tail, d.end)
		if d.atHome {
			continue
		}
		for j := d.start; j < d.end; j++ {
			reused[j] = true
		}
	}
	obs := &model.Observer{From: min(tail, n-1)}
	first := func(layer int, pos []int, _, _ []float32) []int {
		if layer < c.QuestionLayers {
			return all(len(pos))
		}
		return []int{len(pos) - 1}
	}
	if _, err := b.Net.ForwardRecomputeObserved(a.cache, a.tokens, a.fresh, first, obs); err != nil {
		return nil, err
	}
	score := rankByAttention(attentionSums(b.Net, a.cache, obs), reused)
	score = widen(score, reused, c.Window)
	var cands []int
	for j, r := range reused {
		if r && !a.isFresh(j) {
			cands = append(cands, j)
		}
	}
	k := int(math.Ceil(c.Widen * c.Ratio * float64(a.placed)))
	out := append(topK(cands, score, k), a.fresh...)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// isFresh reports whether position j is computed in every pass (outside
// documents, or the prompt's last token).
func (a *assembly) isFresh(j int) bool {
	_, ok := slices.BinarySearch(a.fresh, j)
	return ok
}

// attentionSums returns, per layer and query head (index l·Heads + h),
// the attention the queries obs recorded pay each position of cache, summed
// over the recorded tokens: those from obs.From on that a recompute pass
// kept at that layer, which must end the prompt (all of them, or a
// suffix). A layer without recorded queries gets nil.
func attentionSums(net *model.Model, cache *kvcache.Seq, obs *model.Observer) [][]float32 {
	c := net.Config
	n := cache.Next()
	hd, heads := c.HeadDim, c.Heads
	group := heads / c.KVHeads
	sums := make([][]float32, c.Layers*heads)
	pool := net.Pool()
	pool.For(len(sums), 1, func(worker, lo, hi int) {
		for i := lo; i < hi; i++ {
			l, h := i/heads, i%heads
			if l >= len(obs.Queries) || len(obs.Queries[l]) == 0 {
				continue
			}
			q := obs.Queries[l]
			count := len(q) / (heads * hd)
			kv := cache.View(l, h/group)
			sum := make([]float32, n)
			for t := range count {
				pos := n - count + t
				s := pool.Scratch(worker, pos+1)
				kv.Scores(s, q[(t*heads+h)*hd:(t*heads+h+1)*hd], 0, pos+1, c.AttnScale)
				compute.Softmax(s)
				for j, p := range s {
					sum[j] += p
				}
			}
			sums[i] = sum
		}
	})
	return sums
}

// rankByAttention scores the reused positions from attentionSums: each
// layer and head's sums are normalized to 1 over the reused tokens, so
// that a head that reads mostly the template or an attention sink weighs
// as much as one that reads the documents, and a token's score is its
// largest share in any layer and head. Other positions score 0.
func rankByAttention(sums [][]float32, reused []bool) []float32 {
	out := make([]float32, len(reused))
	for _, p := range sums {
		var mass float32
		for j, v := range p {
			if reused[j] {
				mass += v
			}
		}
		if mass == 0 {
			continue
		}
		for j, v := range p {
			if reused[j] {
				out[j] = max(out[j], v/mass)
			}
		}
	}
	return out
}

// widen gives each reused token the best score of the reused tokens
// within w positions of it.
func widen(score []float32, reused []bool, w int) []float32 {
	if w <= 0 {
		return score
	}
	out := make([]float32, len(score))
	for j, r := range reused {
		if !r {
			continue
		}
		for d := max(0, j-w); d <= min(len(score)-1, j+w); d++ {
			if reused[d] {
				out[j] = max(out[j], score[d])
			}
		}
	}
	return out
}
