package press

import (
	"math"
	"math/rand"
)

// CaM merges each evicted token's value into the kept tokens that follow
// it instead of dropping it. Zhang et al., "CaM: Cache Merging for Memory-
// efficient LLMs Inference", ICML 2024 (openreview LCTmppB165), as
// kvpress's CAMPress does it, run once on the prompt:
//
//   - the scorer (H2O's accumulated attention) is averaged over the layer's
//     KV heads and the ⌈n·ratio⌉ lowest tokens are evicted from every head;
//   - each evicted token i merges into the next MergeBudget kept tokens
//     after it (fewer near the end: m of them) with probability
//     clamp(A_i / mean(A over those m), 0, 1), A being the attention each
//     token accumulated during prefill in that head — one Bernoulli draw
//     per token and head, from a generator seeded by Seed, layer and head,
//     so that runs repeat;
//   - a merging token adds v_i/m to the value of each of the m; keys stay.
//
// kvpress applies CaM while decoding, to the tokens generated since its
// last compression; on a prompt every token is new, so every evicted token
// is a merge candidate.
type CaM struct {
	MergeBudget int
	Seed        int64
}

func init() {
	register("cam", func() (Scorer, Budget) { return ObservedAttention{}, CaM{MergeBudget: 32, Seed: 1} })
}

// Select implements Budget: the ⌊n·(1 − ratio)⌋ tokens with the highest
// mean score over the layer's heads, the same in every head (heads of
// different lengths are ranked alone).
func (c CaM) Select(scores [][]float32, layer, layers int, ratio float64) [][]int {
	n := len(scores[0])
	for _, s := range scores {
		if len(s) != n {
			return Uniform{}.Select(scores, layer, layers, ratio)
		}
	}
	mean := make([]float32, n)
	for _, s := range scores {
		for j, v := range s {
			mean[j] += v / float32(len(scores))
		}
	}
	keep := topK(mean, int(float64(n)*(1-ratio)))
	out := make([][]int, len(scores))
	for g := range out {
		out[g] = keep
	}
	return out
}

// Merge implements Merger.
func (c CaM) Merge(s *State, g int, keep []int) [][]float32 {
	n := s.Tokens(g)
	if s.Obs == nil || s.Layer >= len(s.Obs.AttnSum) || len(s.Obs.AttnSum[s.Layer][g]) < n || len(keep) == 0 {
		return nil
	}
	att := s.Obs.AttnSum[s.Layer][g]
	rng := rand.New(rand.NewSource(c.Seed + int64(s.Layer)*1000 + int64(g)))
	var out [][]float32
	next := 0 // index in keep of the first kept token after j
	kept := make([]bool, n)
	for _, j := range keep {
		kept[j] = true
	}
	for j := range n {
		for next < len(keep) && keep[next] <= j {
			next++
		}
		if kept[j] {
			continue
		}
		m := min(c.MergeBudget, len(keep)-next)
		if m == 0 {
			continue
		}
		var mean float64
		for _, t := range keep[next : next+m] {
			mean += float64(att[t]) / float64(m)
		}
		prob := float64(att[j]) / mean
		switch {
		case math.IsNaN(prob):
			prob = 0
		case math.IsInf(prob, 0):
			prob = 1
		}
		prob = math.Max(0, math.Min(1, prob))
		if rng.Float64() >= prob {
			continue
		}
		if out == nil {
			out = make([][]float32, len(keep))
		}
		for i := next; i < next+m; i++ {
			if out[i] == nil {
				out[i] = append([]float32(nil), s.Value(g, keep[i])...)
			}
			for c2, x := range s.Value(g, j) {
				out[i][c2] += x / float32(m)
			}
		}
	}
	return out
}
