package retrieve

import (
	"slices"
	"strings"

	"github.com/kvserve/kvserve/kvcache"
)

// sentenceKV is SentenceKV (Zhu et al., "SentenceKV: Efficient LLM
// Inference via Sentence-Level Semantic KV Caching", arXiv:2504.00970):
// the cache is cut into sentences at the tokens that end one (a newline or
// . ! ? — SentenceEnds reads them off the tokenizer), no longer than
// MaxSentence tokens; each keeps one vector, the mean of its keys, in
// bfloat16, in fast memory. A query scores sentences by q·vector (the
// most over the group's query heads) and reads the best whole sentences
// within the budget.
type sentenceKV struct {
	sh    *shape
	segs  []segment
	vecs  []uint16 // HeadDim per segment
	open  bool     // the last segment is still growing
	score []float32
	order []int
	key   []float32
	sum   []float32
}

type segment struct{ start, end int }

// MaxSentence is the longest segment sentencekv keeps; a longer sentence
// is cut.
const MaxSentence = 32

func newSentenceKV(sh *shape) selector { return &sentenceKV{sh: sh} }

func (s *sentenceKV) resident() int64 { return int64(2*len(s.vecs) + 16*len(s.segs)) }

func (s *sentenceKV) drop() {
	s.segs = s.segs[:len(s.segs)-1]
	s.vecs = s.vecs[:len(s.segs)*s.sh.headDim]
}

func (s *sentenceKV) extend(kv kvcache.View, ids func(pos int) int, n int) {
	d := s.sh.headDim
	if s.open && len(s.segs) > 0 {
		s.drop()
	}
	s.open = false
	for len(s.segs) > 0 && s.segs[len(s.segs)-1].end > n {
		s.drop()
	}
	j := 0
	if len(s.segs) > 0 {
		j = s.segs[len(s.segs)-1].end
	}
	s.key = grow(s.key, d)
	s.sum = grow(s.sum, d)
	ends := s.sh.opt.SentenceEnd
	for j < n {
		start := j
		clear(s.sum)
		closed := false
		for j < n && j-start < MaxSentence {
			kv.Key(j, s.key)
			for c, x := range s.key[:d] {
				s.sum[c] += x
			}
			id := ids(kv.Pos(j))
			j++
			if id >= 0 && id < len(ends) && ends[id] {
				closed = true
				break
			}
		}
		closed = closed || j-start == MaxSentence
		inv := 1 / float32(j-start)
		for c := range d {
			s.vecs = append(s.vecs, bf16Up(s.sum[c]*inv))
		}
		s.segs = append(s.segs, segment{start, j})
		s.open = !closed
	}
}

func (s *sentenceKV) pick(dst []int, kv kvcache.View, q []float32, lo, hi, budget int) ([]int, int64) {
	d, g := s.sh.headDim, s.sh.group
	s.score = grow(s.score, len(s.segs))
	s.order = s.order[:0]
	covered := 0
	for i, sg := range s.segs {
		covered = sg.end
		if sg.end <= lo || sg.start >= hi {
			continue
		}
		v := s.vecs[i*d : (i+1)*d]
		best := float32(0)
		for h := range g {
			var x float32
			for c, qc := range q[h*d : (h+1)*d] {
				x += qc * bf16(v[c])
			}
			if h == 0 || x > best {
				best = x
			}
		}
		s.score[i] = best
		s.order = append(s.order, i)
	}
	read := int64(len(s.order) * 2 * d)
	k := 0
	for j := hi - 1; j >= max(lo, covered) && k < budget; j-- { // not yet cut into sentences
		dst = append(dst, j)
		k++
	}
	slices.SortFunc(s.order, func(a, b int) int {
		switch {
		case s.score[a] > s.score[b]:
			return -1
		case s.score[a] < s.score[b]:
			return 1
		}
		return a - b
	})
	for _, i := range s.order {
		a, b := max(lo, s.segs[i].start), min(hi, s.segs[i].end)
		if k+b-a > budget {
			continue
		}
		for j := a; j < b; j++ {
			dst = append(dst, j)
		}
		k += b - a
		if k == budget {
			break
		}
	}
	return dst, read
}

// SentenceEnds returns, for each token id below vocab, whether its text
// ends a sentence: it holds a newline or ends in '.', '!' or '?'. decode
// turns one id into its text.
func SentenceEnds(decode func(id int) string, vocab int) []bool {
	ends := make([]bool, vocab)
	for id := range vocab {
		t := decode(id)
		ends[id] = strings.Contains(t, "\n") || strings.HasSuffix(t, ".") || strings.HasSuffix(t, "!") || strings.HasSuffix(t, "?")
	}
	return ends
}
