// Package retrieve chooses, at each decode step, which cached tokens each
// KV head's attention reads: the third stage of a KV cache's life in
// SCBench's terms (retrieval), after generation and compression. The whole
// cache stays — in the pool, or in a cold tier (kvcache.ColdTier) with
// only what selection needs left in fast memory — and a step reads the
// attention sinks, a recent window and the tokens a selector picks for the
// current query, within a budget of tokens per head.
//
// Selectors, one file each: quest (per-page key bounds), tokenselect
// (per-head top-k with selection reuse across similar queries), a2ats
// (product-quantized keys score tokens cheaply), sentencekv (one vector
// per sentence) and oracle (exact attention weights: the upper bound).
package retrieve

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Budget is how many tokens a decode step reads per KV head, sinks and
// window included: a count, or a fraction of the tokens cached.
type Budget struct {
	Tokens   int     // when > 0, the count
	Fraction float64 // otherwise the fraction, in (0, 1]
}

// ParseBudget reads a budget: "1/8" or "0.125" (a fraction of the cached
// tokens) or "256" (a token count).
func ParseBudget(s string) (Budget, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("budget %q: want a fraction in (0, 1] (0.125 or 1/8) or a whole number of tokens (256)", s)
	if a, b, ok := strings.Cut(s, "/"); ok {
		x, err1 := strconv.ParseFloat(a, 64)
		y, err2 := strconv.ParseFloat(b, 64)
		if err1 != nil || err2 != nil || y <= 0 || x <= 0 || x > y {
			return Budget{}, bad
		}
		return Budget{Fraction: x / y}, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return Budget{}, bad
		}
		if n == 1 {
			return Budget{Fraction: 1}, nil
		}
		return Budget{Tokens: n}, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0 && f <= 1) {
		return Budget{}, bad
	}
	return Budget{Fraction: f}, nil
}

// Check returns an error unless b is a positive token count or a fraction
// in (0, 1].
func (b Budget) Check() error {
	if b.Tokens > 0 || (b.Tokens == 0 && b.Fraction > 0 && b.Fraction <= 1) {
		return nil
	}
	return fmt.Errorf("budget %+v: want a token count or a fraction in (0, 1]", b)
}

// Of returns the tokens to read out of n cached.
func (b Budget) Of(n int) int {
	if b.Tokens > 0 {
		return min(n, b.Tokens)
	}
	return min(n, int(math.Ceil(b.Fraction*float64(n))))
}

func (b Budget) String() string {
	if b.Tokens > 0 {
		return strconv.Itoa(b.Tokens)
	}
	return strconv.FormatFloat(b.Fraction, 'g', 4, 64)
}

// Options configures a Retriever.
type Options struct {
	Budget Budget
	// Sinks is how many first tokens every step reads (attention sinks);
	// DefaultSinks if 0, none if negative.
	Sinks int
	// Window is how many last tokens every step reads; 0 picks a quarter
	// of the budget, between 4 and 32.
	Window int
	// Cold, if set, holds the keys and values of tokens outside the sinks
	// and the window: each decode step moves blocks there and fetches the
	// selected rows back.
	Cold *kvcache.ColdTier
	// SentenceEnd tells sentencekv which token ids end a sentence (see
	// SentenceEnds); without it, segments are cut every MaxSentence tokens.
	SentenceEnd []bool
}

// DefaultSinks is the number of first tokens every step reads.
const DefaultSinks = 4

// selector is one method: it keeps a per-head index of the cached keys
// and picks tokens for a query.
type selector interface {
	// extend brings the index up to the view's n tokens (dropping what
	// lies beyond when the cache was truncated).
	extend(kv kvcache.View, ids func(pos int) int, n int)
	// pick appends to dst up to budget indices from [lo, hi) and returns
	// dst and the bytes of index or keys it read.
	pick(dst []int, kv kvcache.View, q []float32, lo, hi, budget int) ([]int, int64)
	// resident returns the bytes the index holds.
	resident() int64
}

// methods maps a name to a constructor of per-head selectors.
var methods = map[string]func(c *shape) selector{
	"none":        func(*shape) selector { return noIndex{} },
	"oracle":      newOracle,
	"quest":       newQuest,
	"tokenselect": newTokenSelect,
	"a2ats":       newA2ATS,
	"sentencekv":  newSentenceKV,
}

// Names returns the selectors, sorted; "none" reads every token (and
// counts what it reads).
func Names() []string {
	var s []string
	for n := range methods {
		s = append(s, n)
	}
	sort.Strings(s)
	return s
}

// Check returns an error naming the methods when name is not one.
func Check(name string) error {
	if _, ok := methods[name]; !ok {
		return fmt.Errorf("unknown retrieval method %q (want one of %s)", name, strings.Join(Names(), ", "))
	}
	return nil
}

// shape is what a selector knows of the model.
type shape struct {
	group, headDim int
	scale          float32
	opt            *Options
}

// Retriever implements model.Retriever for one sequence with one method
// and budget. Stats counts what its decode steps read.
type Retriever struct {
	Name string
	opt  Options
	c    *model.Config
	sh   shape
	// heads[layer*KVHeads+head]
	heads []headState
	ids   []int // token ids by position; -1 where unknown

	steps, tokensRead, tokensCached atomic.Int64
	kvRead, indexRead               atomic.Int64
	residentSum, residentSteps      int64
	// cold-tier reads of decode steps: the tier's count after the last
	// decode step's Prepare, and whether that step is still to be added
	fetchMark    int64
	fetchPending bool
	fetchDecode  int64
}

type headState struct {
	sel selector
	buf []int
}

// New returns a retriever of the named method (Names) for a sequence of
// model c.
func New(name string, c *model.Config, opt Options) (*Retriever, error) {
	if err := Check(name); err != nil {
		return nil, err
	}
	mk := methods[name]
	if err := opt.Budget.Check(); err != nil {
		return nil, fmt.Errorf("retrieval %s: %w", name, err)
	}
	if opt.Sinks == 0 {
		opt.Sinks = DefaultSinks
	}
	opt.Sinks = max(opt.Sinks, 0)
	r := &Retriever{Name: name, opt: opt, c: c}
	r.sh = shape{group: c.Heads / c.KVHeads, headDim: c.HeadDim, scale: c.AttnScale, opt: &r.opt}
	r.heads = make([]headState, c.Layers*c.KVHeads)
	for i := range r.heads {
		r.heads[i].sel = mk(&r.sh)
	}
	return r, nil
}

// Tokens tells the retriever the ids at positions 0 … len(ids)−1, for a
// cache whose start was computed before the retriever saw it (a fork, a
// prefix-cache hit). sentencekv needs them; the others ignore them.
func (r *Retriever) Tokens(ids []int) {
	r.ids = append(r.ids[:0], ids...)
}

func (r *Retriever) id(pos int) int {
	if pos < len(r.ids) {
		return r.ids[pos]
	}
	return -1
}

// window returns the recent tokens every step reads under a budget of k.
func (r *Retriever) window(k int) int {
	if r.opt.Window > 0 {
		return r.opt.Window
	}
	return min(32, max(4, k/4))
}

// Prepare records the pass's token ids, indexes every head up to the
// cache's tokens and, before a decode step with a cold tier, moves the
// blocks outside the sinks and the largest window there.
func (r *Retriever) Prepare(cache *kvcache.Seq, tokens []int) error {
	r.closeFetch()
	next := cache.Next()
	for len(r.ids) < next {
		r.ids = append(r.ids, -1)
	}
	r.ids = append(r.ids[:next], tokens...)
	kvh := r.c.KVHeads
	if cache.Layers() != r.c.Layers || cache.KVHeads() != kvh {
		return fmt.Errorf("retrieval %s: cache of %d layers × %d KV heads, model of %d × %d", r.Name, cache.Layers(), cache.KVHeads(), r.c.Layers, kvh)
	}
	for l := range r.c.Layers {
		for g := range kvh {
			kv := cache.View(l, g)
			r.heads[l*kvh+g].sel.extend(kv, r.id, kv.Len())
		}
	}
	if len(tokens) != 1 {
		return nil
	}
	var index int64
	for l := range r.c.Layers {
		for g := range kvh {
			kv := cache.View(l, g)
			if r.opt.Cold != nil {
				n := kv.Len()
				win := r.window(r.opt.Budget.Of(n + 1))
				if _, err := cache.Offload(l, g, r.opt.Sinks, n+1-win, r.opt.Cold); err != nil {
					return err
				}
			}
			index += r.heads[l*kvh+g].sel.resident()
		}
	}
	r.residentSum += cache.StoredBytes() + index
	r.residentSteps++
	r.steps.Add(1)
	if r.opt.Cold != nil {
		r.fetchMark, r.fetchPending = r.opt.Cold.Fetched(), true
	}
	return nil
}

// closeFetch adds the cold-tier reads since the last decode step's
// Prepare to the decode steps' count (prefill's reads are not counted).
func (r *Retriever) closeFetch() {
	if r.fetchPending {
		r.fetchDecode += r.opt.Cold.Fetched() - r.fetchMark
		r.fetchPending = false
	}
}

// Select returns the sinks, the window and the method's pick in between.
func (r *Retriever) Select(layer, head int, kv kvcache.View, q []float32, pos int) []int {
	n := kv.Len()
	k := r.opt.Budget.Of(n)
	r.tokensCached.Add(int64(n))
	hs := &r.heads[layer*r.c.KVHeads+head]
	sinks := min(r.opt.Sinks, k)
	win := min(r.window(k), k-sinks)
	lo, hi := sinks, n-win
	if k >= n || hi <= lo || r.Name == "none" {
		r.count(kv, 0, n, nil)
		return nil
	}
	dst := hs.buf[:0]
	for j := range sinks {
		dst = append(dst, j)
	}
	dst, read := hs.sel.pick(dst, kv, q, lo, hi, k-sinks-win)
	slices.Sort(dst[sinks:])
	for j := hi; j < n; j++ {
		dst = append(dst, j)
	}
	hs.buf = dst
	r.indexRead.Add(read)
	r.count(kv, 0, 0, dst)
	return dst
}

// count adds the bytes of the tokens read: idx, or [lo, hi) when idx is
// nil.
func (r *Retriever) count(kv kvcache.View, lo, hi int, idx []int) {
	d := r.c.HeadDim
	var b int64
	if idx == nil {
		for j := lo; j < hi; j++ {
			b += TokenBytes(kv.Format(j), d)
		}
		r.tokensRead.Add(int64(hi - lo))
	} else {
		for _, j := range idx {
			b += TokenBytes(kv.Format(j), d)
		}
		r.tokensRead.Add(int64(len(idx)))
	}
	r.kvRead.Add(b)
}

// TokenBytes returns the bytes of one token's key and value of one head in
// format f: elements, plus for KIVI's codes a share of their float16
// scales and zeros (keys per channel over 32 tokens, values per token
// over groups of 32 channels).
func TokenBytes(f kvcache.Format, d int) int64 {
	switch f {
	case kvcache.F32:
		return int64(8 * d)
	case kvcache.BF16:
		return int64(4 * d)
	}
	return int64(2*d*f.Bits()/8 + 4*d/kvcache.DefaultBlockTokens + 4*((d+kvcache.ValueGroup-1)/kvcache.ValueGroup))
}

// Stats is what a retriever's decode steps read, in means per step.
type Stats struct {
	Steps int64 `json:"steps"`
	// KVBytesRead is the bytes of the keys and values attended per step,
	// as stored, over all layers and KV heads.
	KVBytesRead float64 `json:"kv_bytes_attended_per_step"`
	// IndexBytesRead is what selection read per step: page bounds, codes,
	// sentence vectors, or every key (tokenselect, oracle).
	IndexBytesRead float64 `json:"index_bytes_read_per_step"`
	// TokensRead and TokensCached are per step, summed over layers × heads.
	TokensRead   float64 `json:"tokens_read_per_step"`
	TokensCached float64 `json:"tokens_cached_per_step"`
	// Resident is the mean bytes in fast memory at a decode step: the
	// pool's blocks as stored plus the selectors' indexes.
	Resident float64 `json:"kv_bytes_resident"`
	// ColdFetched is the bytes a decode step fetched from the cold tier
	// (selection's reads included), 0 without one.
	ColdFetched float64 `json:"cold_bytes_fetched_per_step"`
}

// Stats returns the means so far.
func (r *Retriever) Stats() Stats {
	st := Stats{Steps: r.steps.Load()}
	if st.Steps == 0 {
		return st
	}
	n := float64(st.Steps)
	st.KVBytesRead = float64(r.kvRead.Load()) / n
	st.IndexBytesRead = float64(r.indexRead.Load()) / n
	st.TokensRead = float64(r.tokensRead.Load()) / n
	st.TokensCached = float64(r.tokensCached.Load()) / n
	if r.residentSteps > 0 {
		st.Resident = float64(r.residentSum) / float64(r.residentSteps)
	}
	r.closeFetch()
	st.ColdFetched = float64(r.fetchDecode) / n
	return st
}

// noIndex is "none": it keeps nothing and is never asked to pick.
type noIndex struct{}

func (noIndex) extend(kvcache.View, func(int) int, int) {}
func (noIndex) pick(dst []int, _ kvcache.View, _ []float32, _, _, _ int) ([]int, int64) {
	return dst, 0
}
func (noIndex) resident() int64 { return 0 }

var _ model.Retriever = (*Retriever)(nil)
