package model

import (
	"fmt"
	"math"

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
	steps := []Step{{Cache: cache, Tokens: tokens, Output: out, Observe: obs}}
	if err := m.checkSteps(steps); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
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
		steps[0] = Step{Cache: cache, Tokens: tokens[start:end], Output: chunkOut, Logits: dst, Observe: obs}
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
	m.pool.MatMul(dst, xn, n, m.Head)
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

func (m *Model) attention(steps []Step, li, n int, observed bool) {
	c := m.Config
	l := &m.Layers[li]
	ws := &m.ws
	h, hd := c.HiddenSize, c.HeadDim
	half := hd / 2
	qd, kvd := c.Heads*hd, c.KVHeads*hd
	for t := range n {
		compute.RMSNorm(ws.xn[t*h:(t+1)*h], ws.x[t*h:(t+1)*h], l.AttnNorm, c.RMSNormEps, c.NormAddOne)
	}
	m.pool.MatMul(ws.q, ws.xn, n, l.Q)
	m.pool.MatMul(ws.k, ws.xn, n, l.K)
	m.pool.MatMul(ws.v, ws.xn, n, l.V)
	for t := range n {
		q, k, v := ws.q[t*qd:(t+1)*qd], ws.k[t*kvd:(t+1)*kvd], ws.v[t*kvd:(t+1)*kvd]
		if l.QBias != nil {
			addTo(q, l.QBias)
			addTo(k, l.KBias)
			addTo(v, l.VBias)
		}
		row := (l.ropeIndex*n + t) * half
		cs, sn := ws.cos[row:row+half], ws.sin[row:row+half]
		for hh := range c.Heads {
			qh := q[hh*hd : (hh+1)*hd]
			if l.QNorm != nil {
				compute.RMSNorm(qh, qh, l.QNorm, c.RMSNormEps, c.NormAddOne)
			}
		}
		if observed {
			m.recordPreRope(steps, li, t, q)
		}
		for hh := range c.Heads {
			applyRope(q[hh*hd:(hh+1)*hd], cs, sn)
		}
		cache := steps[ws.seq[t]].Cache
		for g := range c.KVHeads {
			kh := k[g*hd : (g+1)*hd]
			if l.KNorm != nil {
				compute.RMSNorm(kh, kh, l.KNorm, c.RMSNormEps, c.NormAddOne)
			}
			applyRope(kh, cs, sn)
			cache.Append(li, g, kh, v[g*hd:(g+1)*hd], ws.pos[t])
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
	group := c.Heads / c.KVHeads
	maxKeys := 0
	for _, s := range steps {
		for g := range c.KVHeads {
			maxKeys = max(maxKeys, s.Cache.Len(li, g))
		}
	}
	m.pool.For(n*c.Heads, 1, func(worker, lo, hi int) {
		scores := m.pool.Scratch(worker, maxKeys)
		for i := lo; i < hi; i++ {
			t, hh := i/c.Heads, i%c.Heads
			kv := steps[ws.seq[t]].Cache.View(li, hh/group)
			q := ws.q[t*qd+hh*hd : t*qd+(hh+1)*hd]
			dst := ws.att[t*qd+hh*hd : t*qd+(hh+1)*hd]
			attendOne(dst, q, kv, ws.pos[t], window, c.AttnScale, c.AttnSoftcap, scores)
		}
	})
	m.pool.MatMul(ws.xn, ws.att, n, l.O)
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
	m.pool.MatMul(ws.gate, ws.xn, n, l.Gate)
	m.pool.MatMul(ws.up, ws.xn, n, l.Up)
	gate, up := ws.gate[:n*f], ws.up[:n*f]
	if c.Activation == "gelu_pytorch_tanh" {
		compute.GELUTanhMul(gate, up)
	} else {
		compute.SiLUMul(gate, up)
	}
	m.pool.MatMul(ws.xn, gate, n, l.Down)
	for t := range n {
		o := ws.xn[t*h : (t+1)*h]
		if l.PostMLPNorm != nil {
			compute.RMSNorm(o, o, l.PostMLPNorm, c.RMSNormEps, c.NormAddOne)
		}
		addTo(ws.x[t*h:(t+1)*h], o)
	}
}

func addTo(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}
