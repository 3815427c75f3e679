package press

import "sort"

// AdaKV lets the KV heads of a layer share one budget: the layer keeps
// the same total as a uniform budget, Σ_g ⌊n_g·(1 − ratio)⌋, chosen by one
// top-k over every (head, token) score of the layer, so a head whose
// scores are concentrated gives tokens to a head whose scores are spread.
// A safeguard first gives each head its own top ⌊Alpha·⌊n_g·(1 − ratio)⌋⌋
// tokens. Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive
// Budget Allocation for Efficient LLM Inference" (arXiv:2407.11550), with
// kvpress's safeguard α = 0.2.
//
// Unlike kvpress, which only masks, the heads then hold different counts
// and Seq.Keep frees each head's blocks, so the bytes fall for real. The
// paper leaves open how scores of different heads compare; we compare the
// scorer's raw values (attention probabilities for SnapKV, −cos for
// KeyDiff), with ties going to the lower head, then the earlier token.
type AdaKV struct{ Alpha float64 }

func init() {
	ada := AdaKV{Alpha: 0.2}
	register("adakv_snapkv", func() (Scorer, Budget) { return SnapKV{Window: 64, Kernel: 5}, ada })
	register("adakv_keydiff", func() (Scorer, Budget) { return KeyDiff{}, ada })
	register("adakv_expected_attention", func() (Scorer, Budget) {
		return ExpectedAttention{Future: 512, Sink: 4}, ada
	})
	register("adakv_keydiff_sinks", func() (Scorer, Budget) {
		return Protect{Scorer: KeyDiff{}, Sink: 4, Recent: 64}, ada
	})
}

// Select implements Budget.
func (a AdaKV) Select(scores [][]float32, _, _ int, ratio float64) [][]int {
	keep := make([][]bool, len(scores))
	total := 0
	type cand struct {
		s    float32
		g, j int
	}
	var rest []cand
	for g, s := range scores {
		share := int(float64(len(s)) * (1 - ratio))
		total += share
		keep[g] = make([]bool, len(s))
		for _, j := range topK(s, int(a.Alpha*float64(share))) {
			keep[g][j] = true
			total--
		}
		for j, v := range s {
			if !keep[g][j] {
				rest = append(rest, cand{v, g, j})
			}
		}
	}
	// rest is in (head, token) order, so a stable sort breaks ties there.
	sort.SliceStable(rest, func(x, y int) bool { return rest[x].s > rest[y].s })
	for _, c := range rest[:max(0, min(total, len(rest)))] {
		keep[c.g][c.j] = true
	}
	out := make([][]int, len(scores))
	for g, k := range keep {
		out[g] = []int{}
		for j, ok := range k {
			if ok {
				out[g] = append(out[g], j)
			}
		}
	}
	return out
}
