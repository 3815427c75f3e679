package retrieve

import (
	"github.com/kvserve/kvserve/kvcache"
)

// quest is Quest (Tang et al., "Quest: Query-Aware Sparsity for Efficient
// Long-Context LLM Inference", ICML 2024, arXiv:2406.10774): the cache is
// cut into pages of QuestPage tokens, each keeping the per-channel minimum
// and maximum of its keys (in bfloat16, rounded outward so they stay
// bounds). For a query, Σ_c max(q_c·min_c, q_c·max_c) bounds q·k from
// above for every key of the page; the pages of the highest bound (the
// most over the group's query heads) are read whole.
type quest struct {
	sh       *shape
	min, max []uint16 // per page, HeadDim bounds each
	pages    int      // pages indexed (the last may be partial)
	covered  int      // tokens the pages cover
	score    []float32
	order    []int
	key      []float32
	lo, hi   []float32 // a page's bounds being built
}

// QuestPage is the tokens per Quest page.
const QuestPage = 16

func newQuest(sh *shape) selector { return &quest{sh: sh} }

func (p *quest) resident() int64 { return int64(2 * (len(p.min) + len(p.max))) }

func (p *quest) extend(kv kvcache.View, _ func(int) int, n int) {
	d := p.sh.headDim
	if n < p.covered { // truncated: drop the pages reaching past n
		p.pages = n / QuestPage
		p.covered = p.pages * QuestPage
	}
	// Recompute the last partial page, then add pages up to n.
	if p.covered%QuestPage != 0 {
		p.pages--
		p.covered = p.pages * QuestPage
	}
	p.key = grow(p.key, d)
	for p.covered < n {
		pg := p.pages
		end := min(n, (pg+1)*QuestPage)
		p.min = resize(p.min, (pg+1)*d)
		p.max = resize(p.max, (pg+1)*d)
		mn, mx := p.min[pg*d:(pg+1)*d], p.max[pg*d:(pg+1)*d]
		p.lo, p.hi = grow(p.lo, d), grow(p.hi, d)
		lo, hi := p.lo, p.hi
		for j := pg * QuestPage; j < end; j++ {
			kv.Key(j, p.key)
			for c, x := range p.key[:d] {
				if j == pg*QuestPage || x < lo[c] {
					lo[c] = x
				}
				if j == pg*QuestPage || x > hi[c] {
					hi[c] = x
				}
			}
		}
		for c := range d {
			mn[c], mx[c] = bf16Down(lo[c]), bf16Up(hi[c])
		}
		p.pages++
		p.covered = end
	}
}

func (p *quest) pick(dst []int, kv kvcache.View, q []float32, lo, hi, budget int) ([]int, int64) {
	d, g := p.sh.headDim, p.sh.group
	first, last := lo/QuestPage, min(p.pages, (hi+QuestPage-1)/QuestPage)
	p.score = grow(p.score, p.pages)
	p.order = p.order[:0]
	for pg := first; pg < last; pg++ {
		mn, mx := p.min[pg*d:(pg+1)*d], p.max[pg*d:(pg+1)*d]
		best := float32(0)
		for h := range g {
			qh := q[h*d : (h+1)*d]
			var s float32
			for c, x := range qh {
				a, b := x*bf16(mn[c]), x*bf16(mx[c])
				s += max(a, b)
			}
			if h == 0 || s > best {
				best = s
			}
		}
		p.score[pg] = best
		p.order = append(p.order, pg)
	}
	read := int64((last - first) * 2 * d * 2)
	// Pages of the highest bound first, whole pages while they fit.
	top := topK(p.order, p.score, (budget+QuestPage-1)/QuestPage+1)
	sortByScore(top, p.score)
	k, partial := 0, -1
	for _, pg := range top {
		a, b := max(lo, pg*QuestPage), min(hi, (pg+1)*QuestPage)
		if k+b-a > budget {
			if partial < 0 {
				partial = pg
			}
			continue
		}
		for j := a; j < b; j++ {
			dst = append(dst, j)
		}
		k += b - a
	}
	if partial >= 0 && k < budget { // the rest of the budget: the start of the best page left out
		a := max(lo, partial*QuestPage)
		for j := a; j < a+budget-k; j++ {
			dst = append(dst, j)
		}
	}
	return dst, read
}

// sortByScore sorts the few idx by descending score (insertion sort).
func sortByScore(idx []int, score []float32) {
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && score[idx[j]] > score[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
}
