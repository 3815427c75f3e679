package retrieve

import (
	"math"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// tokenSelect is TokenSelect (Wu et al., "TokenSelect: Efficient
// Long-Context Inference and Length Extrapolation for LLMs via Dynamic
// Token-Level KV Cache Selection", arXiv:2411.02886): per query head,
// q·k over the candidates, turned into softmax weights and summed over
// the group (the head soft vote); the top tokens are read. Its selection
// cache: when every query head of the group points where it pointed at
// the last selection (cosine similarity ≥ ReuseSimilarity), the last
// selection is read again, plus the tokens that have left the window
// since (while they are at most a quarter of the budget), without
// reading any key.
type tokenSelect struct {
	sh      *shape
	s, vote []float32
	cands   []int
	// the last selection: its queries, the picked indices and the hi it
	// was made for
	lastQ    []float32
	last     []int
	lastHi   int
	lastN    int
	hasLast  bool
	reused   int
	computed int
}

// ReuseSimilarity is the cosine similarity of consecutive queries above
// which tokenselect reuses its last selection.
const ReuseSimilarity = 0.9

func newTokenSelect(sh *shape) selector { return &tokenSelect{sh: sh} }

func (t *tokenSelect) extend(kv kvcache.View, _ func(int) int, n int) {
	if n < t.lastN { // truncated: the cached selection may name tokens gone
		t.hasLast = false
	}
	t.lastN = n
}

func (t *tokenSelect) resident() int64 { return int64(4 * len(t.lastQ)) }

func (t *tokenSelect) similar(q []float32) bool {
	if !t.hasLast {
		return false
	}
	d := t.sh.headDim
	for h := range t.sh.group {
		a, b := q[h*d:(h+1)*d], t.lastQ[h*d:(h+1)*d]
		ab, aa, bb := compute.Dot(a, b), compute.Dot(a, a), compute.Dot(b, b)
		if aa == 0 || bb == 0 || float64(ab)/math.Sqrt(float64(aa)*float64(bb)) < ReuseSimilarity {
			return false
		}
	}
	return true
}

func (t *tokenSelect) pick(dst []int, kv kvcache.View, q []float32, lo, hi, budget int) ([]int, int64) {
	if t.similar(q) && hi >= t.lastHi && hi-t.lastHi <= budget/4 {
		// The tokens that have left the window since (never scored), then
		// the last pick, within the budget.
		t.reused++
		k := 0
		for j := hi - 1; j >= t.lastHi && k < budget; j-- {
			dst = append(dst, j)
			k++
		}
		for _, j := range t.last {
			if j >= lo && j < min(hi, t.lastHi) && k < budget {
				dst = append(dst, j)
				k++
			}
		}
		return dst, 0
	}
	t.computed++
	g, d := t.sh.group, t.sh.headDim
	m := hi - lo
	t.s = grow(t.s, g*m)
	read := keyScores(t.s, kv, q, g, d, lo, hi, t.sh.scale)
	t.vote = grow(t.vote, m)
	softVote(t.vote, t.s, g, m)
	t.cands = t.cands[:0]
	for j := range m {
		t.cands = append(t.cands, j)
	}
	top := topK(t.cands, t.vote, budget)
	t.last = t.last[:0]
	for _, j := range top {
		t.last = append(t.last, lo+j)
	}
	dst = append(dst, t.last...)
	t.lastQ = append(t.lastQ[:0], q...)
	t.lastHi, t.hasLast = hi, true
	return dst, read
}
