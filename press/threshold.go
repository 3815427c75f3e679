package press

// Threshold is a budget by threshold instead of by count: a token stays
// when its score reaches a cut placed between the layer's lowest and
// highest score, cut = lo + τ·(hi − lo), with τ given as the press's
// ratio. How many tokens each head and each layer keep then follows from
// the scores — a head or layer whose scores are spread keeps more — and
// the fraction really removed is an outcome, read from the bytes the
// cache holds afterwards (bench accuracy's kv_bytes), not an input. It is
// the score-threshold mode of eviction in the spirit of kvpress's
// threshold-based presses; the cut is ours.
//
// Choices: the cut is shared by all KV heads of a layer (scores of one
// scorer in one layer are on one scale), so heads keep different counts;
// a safeguard keeps each head's Floor best tokens whatever their scores,
// so no head is ever emptied; ties at the cut stay.
type Threshold struct {
	// Floor is the fewest tokens any head keeps.
	Floor int
}

func init() {
	th := Threshold{Floor: 4}
	register("threshold_keydiff", func() (Scorer, Budget) { return KeyDiff{}, th })
	register("threshold_snapkv", func() (Scorer, Budget) { return SnapKV{Window: 64, Kernel: 5}, th })
	register("threshold_expected_attention", func() (Scorer, Budget) {
		return ExpectedAttention{Future: 512, Sink: 4}, th
	})
}

// Select implements Budget; ratio is the threshold τ in [0, 1).
func (b Threshold) Select(scores [][]float32, _, _ int, tau float64) [][]int {
	lo, hi, any := float32(0), float32(0), false
	for _, s := range scores {
		for _, v := range s {
			if v != v || v < -maxScore || v > maxScore { // NaN and ±Inf (protected tokens) do not stretch the scale
				continue
			}
			if !any || v < lo {
				lo = v
			}
			if !any || v > hi {
				hi = v
			}
			any = true
		}
	}
	cut := lo + float32(tau)*(hi-lo)
	out := make([][]int, len(scores))
	for g, s := range scores {
		keep := make([]bool, len(s))
		for _, j := range topK(s, b.Floor) {
			keep[j] = true
		}
		for j, v := range s {
			if v >= cut {
				keep[j] = true
			}
		}
		for j, k := range keep {
			if k {
				out[g] = append(out[g], j)
			}
		}
	}
	return out
}

// maxScore bounds the scores Threshold places its cut among: a scorer
// marks tokens it must keep (sinks, the recent window) with +Inf or a
// huge value, which would otherwise stretch the scale.
const maxScore = 1e30
