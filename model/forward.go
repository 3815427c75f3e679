package model

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// ChunkSize is the most tokens one pass through the layers takes; longer
// inputs are processed in chunks so activations stay small.
const ChunkSize = 512

// Output selects which positions' logits a forward pass returns.
type Output int

// Output modes.
const (
	LastLogits Output = iota // logits of the last token only
	AllLogits                // logits of every token passed in
	NoLogits                 // none: only fill the cache
)

// rows returns how many logit rows a sequence of n tokens asks for.
func (o Output) rows(n int) int {
	switch o {
	case LastLogits:
		return 1
	case AllLogits:
		return n
	}
	return 0
}

// Step is one sequence's share of a batched forward pass.
type Step struct {
	Cache  *kvcache.Seq
	Tokens []int
	Output Output
	// Logits receives Output.rows(len(Tokens)) vocab-sized rows, reused by
	// the next pass.
	Logits []float32
	// Observe, if set, records queries and attention statistics for
	// KV-cache compression.
	Observe *Observer
	// Pooled, if set (hidden-size long), receives the sum of the step's
	// final hidden states after the model's final norm (embed.go).
	Pooled []float64
	// Retrieve, if set, chooses the cached tokens a decode step (one
	// token) attends to (retrieve.go).
	Retrieve Retriever
}

// workspace holds the activations of one pass, reused between calls.
type workspace struct {
	n                   int // tokens the buffers are sized for
	x, xn, q, k, v, att []float32
	gate, up            []float32
	cos, sin            []float32 // per token, per RoPE table: [table][token][half]
	seq                 []int     // token → index of its step
	pos                 []int     // token → position
	logits              []float32
	one                 [1]Step // Forward's single step, so it allocates nothing
	attn                attnJob
}

func (ws *workspace) ensure(c *Config, n, tables int) {
	if ws.n >= n {
		return
	}
	h, qd, kvd := c.HiddenSize, c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	ws.n = n
	ws.x = make([]float32, n*h)
	ws.xn = make([]float32, n*max(h, qd))
	ws.q = make([]float32, n*qd)
	ws.k = make([]float32, n*kvd)
	ws.v = make([]float32, n*kvd)
	ws.att = make([]float32, n*qd)
	ws.gate = make([]float32, n*c.IntermediateSize)
	ws.up = make([]float32, n*c.IntermediateSize)
	ws.cos = make([]float32, tables*n*c.HeadDim/2)
	ws.sin = make([]float32, tables*n*c.HeadDim/2)
	ws.seq = make([]int, n)
	ws.pos = make([]int, n)
}

// Forward runs tokens through the model at the cache's next positions,
// appends their keys and values to cache, and returns logits as one
// vocab-sized row per requested position. The returned slice is reused by
// the next call.
func (m *Model) Forward(cache *kvcache.Seq, tokens []int, out Output) ([]float32, error) {
	return m.forward(cache, tokens, out, nil)
}

func (m *Model) forward(cache *kvcache.Seq, tokens []int, out Output, obs *Observer) ([]float32, error) {
	return m.forwardWith(cache, tokens, out, obs, nil)
}

// forwardWith is forward whose decode steps attend through r (nil: to
// every cached token).
func (m *Model) forwardWith(cache *kvcache.Seq, tokens []int, out Output, obs *Observer, r Retriever) ([]float32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	steps := m.ws.one[:]
	steps[0] = Step{Cache: cache, Tokens: tokens, Output: out, Observe: obs}
	defer clear(steps) // drop references to the caller's cache and tokens
	if err := m.checkSteps(steps); err != nil {
		return nil, err
	}
	v := m.Config.VocabSize
	if need := out.rows(len(tokens)) * v; cap(m.ws.logits) < need {
		m.ws.logits = make([]float32, need)
	}
	logits := m.ws.logits[:out.rows(len(tokens))*v]
	for start := 0; start < len(tokens); start += ChunkSize {
		end := min(len(tokens), start+ChunkSize)
		chunkOut := NoLogits
		var dst []float32
		switch {
		case out == AllLogits:
			chunkOut, dst = AllLogits, logits[start*v:end*v]
		case out == LastLogits && end == len(tokens):
			chunkOut, dst = LastLogits, logits
		}
		steps[0] = Step{Cache: cache, Tokens: tokens[start:end], Output: chunkOut, Logits: dst, Observe: obs, Retrieve: r}
		m.pass(steps)
	}
	return logits, nil
}

// ForwardBatch runs one pass over several sequences at once: their tokens
// share every matrix product, and each attends to its own cache. Each
// step's Logits must have room for its Output rows. The caller keeps the
// total number of tokens moderate (a few hundred); ForwardBatch does not
// split it.
func (m *Model) ForwardBatch(steps []Step) error {
	if err := m.checkSteps(steps); err != nil {
		return err
	}
	if err := prepareSteps(steps); err != nil {
		return err
	}
	for i := range steps {
		if need := steps[i].Output.rows(len(steps[i].Tokens)) * m.Config.VocabSize; len(steps[i].Logits) < need {
			return fmt.Errorf("model: step %d: logits buffer of %d floats, need %d", i, len(steps[i].Logits), need)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pass(steps)
	return nil
}

func (m *Model) checkSteps(steps []Step) error {
	c := m.Config
	for si, s := range steps {
		if len(s.Tokens) == 0 {
			return fmt.Errorf("model: forward of zero tokens")
		}
		if end := s.Cache.Next() + len(s.Tokens); end > c.MaxPositions {
			return fmt.Errorf("model: %d tokens would reach position %d, past the model's context of %d", len(s.Tokens), end, c.MaxPositions)
		}
		for i, t := range s.Tokens {
			if t < 0 || t >= c.VocabSize {
				return fmt.Errorf("model: token %d at index %d is outside the vocabulary of %d", t, i, c.VocabSize)
			}
		}
		for sj := range si {
			if steps[sj].Cache == s.Cache {
				return fmt.Errorf("model: steps %d and %d share one cache", sj, si)
			}
		}
		if err := s.Cache.Reserve(len(s.Tokens)); err != nil {
			return fmt.Errorf("model: step %d: %w", si, err)
		}
	}
	return nil
}

// pass runs all steps' tokens through every layer and writes the logits
// they ask for.
func (m *Model) pass(steps []Step) {
	c := m.Config
	h := c.HiddenSize
	n := 0
	for _, s := range steps {
		n += len(s.Tokens)
	}
	ws := &m.ws
	ws.ensure(c, n, len(m.ropes))
	t := 0
	for si, s := range steps {
		pos0 := s.Cache.Next()
		for i, id := range s.Tokens {
			ws.seq[t], ws.pos[t] = si, pos0+i
			m.Embed.Row(id, ws.x[t*h:(t+1)*h])
			if c.EmbedScale != 1 {
				for j := range ws.x[t*h : (t+1)*h] {
					ws.x[t*h+j] *= c.EmbedScale
				}
			}
			t++
		}
	}
	m.ropeRows(n)
	observed := false
	for _, s := range steps {
		observed = observed || s.Observe != nil
	}
	for i := range m.Layers {
		if observed {
			m.recordHidden(steps, i, n)
		}
		m.attention(steps, i, n, observed)
		m.mlp(&m.Layers[i], n)
	}
	t = 0
	for _, s := range steps {
		switch s.Output {
		case AllLogits:
			m.logits(s.Logits, t, len(s.Tokens))
		case LastLogits:
			m.logits(s.Logits, t+len(s.Tokens)-1, 1)
		}
		if s.Pooled != nil {
			m.addPooled(s.Pooled, t, len(s.Tokens))
		}
		t += len(s.Tokens)
		s.Cache.Advance(len(s.Tokens))
	}
}

// logits computes n rows of logits from the final hidden states of tokens
// from … from+n-1 of the pass.
func (m *Model) logits(dst []float32, from, n int) {
	c := m.Config
	h := c.HiddenSize
	xn := m.ws.xn[from*h : (from+n)*h]
	for t := range n {
		compute.RMSNorm(xn[t*h:(t+1)*h], m.ws.x[(from+t)*h:(from+t+1)*h], m.Norm, c.RMSNormEps, c.NormAddOne)
	}
	m.matMul(dst, xn, n, m.Head)
	if sc := c.FinalSoftcap; sc > 0 {
		for i, v := range dst[:n*c.VocabSize] {
			dst[i] = sc * float32(math.Tanh(float64(v/sc)))
		}
	}
}

// ropeRows fills cos and sin of every RoPE table at each token's position.
// Angles are float32 products, as transformers computes them.
func (m *Model) ropeRows(n int) {
	half := m.Config.HeadDim / 2
	for ti, r := range m.ropes {
		for t := range n {
			p := float32(m.ws.pos[t])
			row := (ti*n + t) * half
			for i, f := range r.invFreq {
				ang := float64(p * f)
				m.ws.cos[row+i] = float32(math.Cos(ang)) * r.scale
				m.ws.sin[row+i] = float32(math.Sin(ang)) * r.scale
			}
		}
	}
}

// applyRope rotates one head vector in the "rotate half" layout of Hugging
// Face checkpoints: dimension i pairs with i + d/2.
func applyRope(x, cs, sn []float32) {
	half := len(cs)
	for i := range half {
		a, b := x[i], x[i+half]
		x[i] = a*cs[i] - b*sn[i]
		x[i+half] = b*cs[i] + a*sn[i]
	}
}

// qkv computes layer li's queries, keys and values of the n rows of ws.x
// into ws.q, ws.k and ws.v: the attention norm, the projections and their
// biases, the per-head q/k norms, and RoPE at each row's position.
// preRope, if set, sees each row's queries before they are rotated.
func (m *Model) qkv(li, n int, preRope func(t int, q []float32)) {
	c := m.Config
	l := &m.Layers[li]
	ws := &m.ws
	h, hd := c.HiddenSize, c.HeadDim
	half := hd / 2
	qd, kvd := c.Heads*hd, c.KVHeads*hd
	for t := range n {
		compute.RMSNorm(ws.xn[t*h:(t+1)*h], ws.x[t*h:(t+1)*h], l.AttnNorm, c.RMSNormEps, c.NormAddOne)
	}
	m.matMul(ws.q, ws.xn, n, l.Q)
	m.matMul(ws.k, ws.xn, n, l.K)
	m.matMul(ws.v, ws.xn, n, l.V)
	for t := range n {
		q, k, v := ws.q[t*qd:(t+1)*qd], ws.k[t*kvd:(t+1)*kvd], ws.v[t*kvd:(t+1)*kvd]
		if l.QBias != nil {
			addTo(q, l.QBias)
			addTo(k, l.KBias)
			addTo(v, l.VBias)
		}
		row := (l.ropeIndex*n + t) * half
		cs, sn := ws.cos[row:row+half], ws.sin[row:row+half]
		if l.QNorm != nil {
			for hh := range c.Heads {
				qh := q[hh*hd : (hh+1)*hd]
				compute.RMSNorm(qh, qh, l.QNorm, c.RMSNormEps, c.NormAddOne)
			}
		}
		if preRope != nil {
			preRope(t, q)
		}
		for hh := range c.Heads {
			applyRope(q[hh*hd:(hh+1)*hd], cs, sn)
		}
		for g := range c.KVHeads {
			kh := k[g*hd : (g+1)*hd]
			if l.KNorm != nil {
				compute.RMSNorm(kh, kh, l.KNorm, c.RMSNormEps, c.NormAddOne)
			}
			applyRope(kh, cs, sn)
		}
	}
}

func (m *Model) attention(steps []Step, li, n int, observed bool) {
	c := m.Config
	l := &m.Layers[li]
	ws := &m.ws
	h, hd := c.HiddenSize, c.HeadDim
	kvd := c.KVHeads * hd
	var preRope func(t int, q []float32)
	if observed {
		preRope = func(t int, q []float32) { m.recordPreRope(steps, li, t, q) }
	}
	m.qkv(li, n, preRope)
	for t := range n {
		k, v := ws.k[t*kvd:(t+1)*kvd], ws.v[t*kvd:(t+1)*kvd]
		cache := steps[ws.seq[t]].Cache
		for g := range c.KVHeads {
			cache.Append(li, g, k[g*hd:(g+1)*hd], v[g*hd:(g+1)*hd], ws.pos[t])
		}
	}
	if observed {
		m.recordQueries(steps, li, n)
		m.recordAttention(steps, li, n)
	}
	window := 0
	if c.Sliding[li] {
		window = c.SlidingWindow
	}
	m.attend(steps, li, n, window)
	m.matMul(ws.xn, ws.att, n, l.O)
	for t := range n {
		o := ws.xn[t*h : (t+1)*h]
		if l.PostAttnNorm != nil {
			compute.RMSNorm(o, o, l.PostAttnNorm, c.RMSNormEps, c.NormAddOne)
		}
		addTo(ws.x[t*h:(t+1)*h], o)
	}
}

// attendOne computes one query head's attention over a KV head's cached
// tokens whose positions are ≤ pos (and, with a window, > pos − window).
func attendOne(dst, q []float32, kv kvcache.View, pos, window int, scale, softcap float32, scores []float32) {
	from := 0
	if window > 0 {
		from = pos - window + 1
	}
	lo, hi := kv.Span(from, pos)
	s := scores[:hi-lo]
	kv.Scores(s, q, lo, hi, scale)
	if softcap > 0 {
		for j, v := range s {
			s[j] = softcap * float32(math.Tanh(float64(v/softcap)))
		}
	}
	compute.Softmax(s)
	clear(dst)
	kv.Mix(dst, s, lo, hi)
}

func (m *Model) mlp(l *Layer, n int) {
	c := m.Config
	ws := &m.ws
	h, f := c.HiddenSize, c.IntermediateSize
	for t := range n {
		compute.RMSNorm(ws.xn[t*h:(t+1)*h], ws.x[t*h:(t+1)*h], l.MLPNorm, c.RMSNormEps, c.NormAddOne)
	}
	m.matMul(ws.gate, ws.xn, n, l.Gate)
	m.matMul(ws.up, ws.xn, n, l.Up)
	gate, up := ws.gate[:n*f], ws.up[:n*f]
	act := compute.SiLUMul
	if c.Activation == "gelu_pytorch_tanh" {
		act = compute.GELUTanhMul
	}
	if n < parallelRows { // a decode step: not worth waking the workers (and allocation-free)
		act(gate, up)
	} else {
		m.pool.For(n, 4, func(_, lo, hi int) { act(gate[lo*f:hi*f], up[lo*f:hi*f]) })
	}
	m.matMul(ws.xn, gate, n, l.Down)
	for t := range n {
		o := ws.xn[t*h : (t+1)*h]
		if l.PostMLPNorm != nil {
			compute.RMSNorm(o, o, l.PostMLPNorm, c.RMSNormEps, c.NormAddOne)
		}
		addTo(ws.x[t*h:(t+1)*h], o)
	}
}

// parallelRows is the least number of rows for which mlp spreads its
// elementwise work over the pool.
const parallelRows = 8

func addTo(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}

// attnItem is one unit of attention work: the query heads of KV head g for
// tokens [t0, t1) of the pass, all of one step. tiled items run blockwise
// over raw cache blocks; the others query by query through the View.
type attnItem struct {
	step, g, t0, t1 int32
	tiled           bool
	retrieved       bool // a decode token whose keys a Retriever selects
}

// attnScratch is one worker's buffers for tiled attention.
type attnScratch struct {
	q, out, s []float32 // queries, outputs and scores of a tile
	mx, sum   []float32 // running max and sum per query
	kf, vf    []float32 // a bf16 block widened
	jlo, jhi  []int     // per token: the block's keys it may see
}

// attnJob holds attention's arguments for the pool, so the loop needs no
// closure, and hands out items dynamically: later tokens see more keys.
type attnJob struct {
	m       *Model
	steps   []Step
	li      int
	window  int
	tile    int // tokens per tiled item
	maxKeys int
	items   []attnItem
	next    atomic.Int32
	scratch []attnScratch
	// gathered holds each worker's buffers for retrieved items.
	gathered []retrievedScratch
	run      func(worker, lo, hi int) // runItems, bound once
}

// attnTileQueries is about how many query rows (tokens × grouped heads) a
// tiled item takes: enough for the wide score kernels, small enough to keep
// a tile's queries, scores and outputs in cache.
const attnTileQueries = 48

// attend computes ws.att for the n tokens of the pass from their queries
// and the cache of layer li.
func (m *Model) attend(steps []Step, li, n, window int) {
	c := m.Config
	ws := &m.ws
	j := &ws.attn
	if j.run == nil {
		j.m = m
		j.run = j.runItems
	}
	group := c.Heads / c.KVHeads
	j.steps, j.li, j.window = steps, li, window
	j.tile = max(1, attnTileQueries/group)
	j.items = j.items[:0]
	j.maxKeys = 0
	t := 0
	for si, s := range steps {
		nt := len(s.Tokens)
		for g := range c.KVHeads {
			kv := s.Cache.View(li, g)
			j.maxKeys = max(j.maxKeys, kv.Len())
			if window == 0 && retrieverOf(&steps[si]) != nil {
				j.items = append(j.items, attnItem{step: int32(si), g: int32(g), t0: int32(t), t1: int32(t + 1), retrieved: true})
				continue
			}
			if useGenericAttention || !kv.Plain() {
				for tt := t + nt - 1; tt >= t; tt-- {
					j.items = append(j.items, attnItem{step: int32(si), g: int32(g), t0: int32(tt), t1: int32(tt + 1)})
				}
				continue
			}
			// Last tiles first: they see the most keys.
			for end := t + nt; end > t; end -= j.tile {
				j.items = append(j.items, attnItem{step: int32(si), g: int32(g), t0: int32(max(t, end-j.tile)), t1: int32(end), tiled: true})
			}
		}
		t += nt
	}
	threads := m.pool.Threads()
	if len(j.scratch) < threads {
		j.scratch = make([]attnScratch, threads)
		j.gathered = make([]retrievedScratch, threads)
	}
	j.next.Store(0)
	m.pool.For(min(threads, len(j.items)), 1, j.run)
	j.steps = nil
}

// useGenericAttention forces the query-by-query path. It is off: the tiled
// path's non-repeatable logits came from compute.MaxF32's AVX2 kernel
// reading 8 floats past a 32-float slice (fixed), which here were the next
// worker-owned scratch row or stale memory.
var useGenericAttention = false

// runItems takes items until none are left.
func (j *attnJob) runItems(worker, _, _ int) {
	for {
		i := int(j.next.Add(1)) - 1
		if i >= len(j.items) {
			return
		}
		it := j.items[i]
		if it.tiled {
			j.tiled(worker, it)
			continue
		}
		m := j.m
		c := m.Config
		ws := &m.ws
		hd, qd := c.HeadDim, c.Heads*c.HeadDim
		group := c.Heads / c.KVHeads
		kv := j.steps[it.step].Cache.View(j.li, int(it.g))
		if it.retrieved && j.attendRetrieved(worker, retrieverOf(&j.steps[it.step]), kv, int(it.g), int(it.t0)) {
			continue
		}
		scores := m.pool.Scratch(worker, j.maxKeys)
		for t := int(it.t0); t < int(it.t1); t++ {
			for hh := int(it.g) * group; hh < (int(it.g)+1)*group; hh++ {
				q := ws.q[t*qd+hh*hd : t*qd+(hh+1)*hd]
				dst := ws.att[t*qd+hh*hd : t*qd+(hh+1)*hd]
				attendOne(dst, q, kv, ws.pos[t], j.window, c.AttnScale, c.AttnSoftcap, scores)
			}
		}
	}
}

// grow returns b with length n, reallocating only when it is too short.
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// tiled computes one item's attention block by block over the raw cache:
// all grouped query heads of a tile of tokens against each block with the
// multi-query kernels, under an online softmax (a running max and sum per
// query, rescaling the output when the max rises).
func (j *attnJob) tiled(worker int, it attnItem) {
	m := j.m
	c := m.Config
	ws := &m.ws
	hd, qd := c.HeadDim, c.Heads*c.HeadDim
	group := c.Heads / c.KVHeads
	t0, t1 := int(it.t0), int(it.t1)
	nt := t1 - t0
	nq := nt * group
	kv := j.steps[it.step].Cache.View(j.li, int(it.g))
	bt := kv.BlockTokens()

	sc := &j.scratch[worker]
	sc.q = grow(sc.q, nq*hd)
	sc.out = grow(sc.out, nq*hd)
	sc.s = grow(sc.s, nq*bt)
	sc.mx = grow(sc.mx, nq)
	sc.sum = grow(sc.sum, nq)
	sc.kf = grow(sc.kf, bt*hd)
	sc.vf = grow(sc.vf, bt*hd)
	sc.jlo = grow(sc.jlo, nt)
	sc.jhi = grow(sc.jhi, nt)
	q, out, s := sc.q, sc.out, sc.s
	gw := group * hd
	for tt := range nt {
		t := t0 + tt
		copy(q[tt*gw:(tt+1)*gw], ws.q[t*qd+int(it.g)*gw:t*qd+(int(it.g)+1)*gw])
	}
	clear(out)
	negInf := float32(math.Inf(-1))
	for i := range nq {
		sc.mx[i], sc.sum[i] = negInf, 0
	}
	from := 0
	if j.window > 0 {
		from = ws.pos[t0] - j.window + 1
	}
	lo, hi := kv.Span(from, ws.pos[t1-1])
	scale, softcap := c.AttnScale, c.AttnSoftcap
	for bi := lo / bt; bi*bt < hi; bi++ {
		bd, _ := kv.Block(bi)
		// Each token sees the keys of the block in [jlo, jhi).
		a, b := bd.N, 0
		for tt := range nt {
			p := ws.pos[t0+tt]
			f := 0
			if j.window > 0 {
				f = p - j.window + 1
			}
			jl := firstPos(bd.Pos, f)
			jh := firstPos(bd.Pos, p+1)
			sc.jlo[tt], sc.jhi[tt] = jl, jh
			if jl < jh {
				a, b = min(a, jl), max(b, jh)
			}
		}
		if a >= b {
			continue
		}
		kb, vb := bd.K, bd.V
		if kb == nil {
			kb, vb = sc.kf[:bd.N*hd], sc.vf[:bd.N*hd]
			compute.BF16ToF32(kb[a*hd:b*hd], bd.K16[a*hd:b*hd])
			compute.BF16ToF32(vb[a*hd:b*hd], bd.V16[a*hd:b*hd])
		}
		compute.ScoresMulti(s[a:], bt, q, nq, kb[a*hd:b*hd], b-a, scale)
		for i := range nq {
			tt := i / group
			jl, jh := sc.jlo[tt], sc.jhi[tt]
			row := s[i*bt : i*bt+bt]
			if jl >= jh {
				clear(row[a:b])
				continue
			}
			clear(row[a:jl])
			clear(row[jh:b])
			valid := row[jl:jh]
			if softcap > 0 {
				for k, v := range valid {
					valid[k] = softcap * float32(math.Tanh(float64(v/softcap)))
				}
			}
			if bm := compute.MaxF32(valid); bm > sc.mx[i] {
				if sc.sum[i] != 0 {
					alpha := float32(math.Exp(float64(sc.mx[i] - bm)))
					compute.Scale(out[i*hd:(i+1)*hd], alpha)
					sc.sum[i] *= alpha
				}
				sc.mx[i] = bm
			}
			sc.sum[i] += compute.ExpSub(valid, valid, sc.mx[i])
		}
		compute.MixRowsMulti(out, hd, s[a:], bt, nq, vb[a*hd:b*hd], b-a)
	}
	for tt := range nt {
		t := t0 + tt
		for gh := range group {
			i := tt*group + gh
			o := out[i*hd : (i+1)*hd]
			compute.Scale(o, 1/sc.sum[i])
			hh := int(it.g)*group + gh
			copy(ws.att[t*qd+hh*hd:t*qd+(hh+1)*hd], o)
		}
	}
}

// firstPos returns the first index of the ascending pos whose value is ≥ p.
func firstPos(pos []int32, p int) int {
	lo, hi := 0, len(pos)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if int(pos[mid]) < p {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
