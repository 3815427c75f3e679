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

// workspace holds the activations of one chunk, reused between calls.
type workspace struct {
	n                   int // tokens the buffers are sized for
	x, xn, q, k, v, att []float32
	gate, up            []float32
	rope                map[*ropeTable]*ropeRows
	logits              []float32
}

func (ws *workspace) ensure(c *Config, n int) {
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
	ws.rope = map[*ropeTable]*ropeRows{}
}

// ropeRows holds cos and sin of one RoPE variant for the chunk's positions.
type ropeRows struct {
	cos, sin []float32
	fresh    bool // computed for the current chunk
}

// Output selects which positions' logits Forward returns.
type Output int

// Output modes.
const (
	LastLogits Output = iota // logits of the last token only
	AllLogits                // logits of every token passed in
	NoLogits                 // none: only fill the cache
)

// Forward runs tokens through the model at the cache's next positions,
// appends their keys and values to cache, and returns logits as one
// vocab-sized row per requested position. The returned slice is reused by
// the next call. Forward serializes callers: one pass runs at a time.
func (m *Model) Forward(cache *kvcache.Seq, tokens []int, out Output) ([]float32, error) {
	c := m.Config
	if len(tokens) == 0 {
		return nil, fmt.Errorf("model: forward of zero tokens")
	}
	if end := cache.Next() + len(tokens); end > c.MaxPositions {
		return nil, fmt.Errorf("model: %d tokens would reach position %d, past the model's context of %d", len(tokens), end, c.MaxPositions)
	}
	for i, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return nil, fmt.Errorf("model: token %d at index %d is outside the vocabulary of %d", t, i, c.VocabSize)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rowsOut := 0
	switch out {
	case LastLogits:
		rowsOut = 1
	case AllLogits:
		rowsOut = len(tokens)
	}
	if need := rowsOut * c.VocabSize; cap(m.ws.logits) < need {
		m.ws.logits = make([]float32, need)
	}
	logits := m.ws.logits[:rowsOut*c.VocabSize]
	for start := 0; start < len(tokens); start += ChunkSize {
		chunk := tokens[start:min(len(tokens), start+ChunkSize)]
		m.forwardChunk(cache, chunk)
		switch {
		case out == AllLogits:
			m.logits(logits[start*c.VocabSize:], len(chunk), 0)
		case out == LastLogits && start+len(chunk) == len(tokens):
			m.logits(logits, 1, len(chunk)-1)
		}
	}
	return logits, nil
}

// logits computes n rows of logits from the final hidden states starting at
// token index from of the current chunk.
func (m *Model) logits(dst []float32, n, from int) {
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

// forwardChunk runs one chunk of tokens through every layer, leaving the
// last layer's output in ws.x.
func (m *Model) forwardChunk(cache *kvcache.Seq, tokens []int) {
	c := m.Config
	n, h := len(tokens), c.HiddenSize
	ws := &m.ws
	ws.ensure(c, n)
	pos0 := cache.Next()
	for t, id := range tokens {
		m.Embed.Row(id, ws.x[t*h:(t+1)*h])
		if c.EmbedScale != 1 {
			for i := range ws.x[t*h : (t+1)*h] {
				ws.x[t*h+i] *= c.EmbedScale
			}
		}
	}
	for _, rows := range ws.rope {
		rows.fresh = false
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		if rows := ws.rope[l.rope]; rows == nil || !rows.fresh {
			m.ropeFor(l.rope, pos0, n)
		}
		m.attention(cache, i, n, pos0)
		m.mlp(l, n)
	}
	cache.Advance(n)
}

// ropeFor fills r's cos/sin rows for positions pos0 … pos0+n-1.
func (m *Model) ropeFor(r *ropeTable, pos0, n int) {
	half := len(r.invFreq)
	rows := m.ws.rope[r]
	if rows == nil {
		rows = &ropeRows{}
		m.ws.rope[r] = rows
	}
	rows.cos, rows.sin = growF(rows.cos, n*half), growF(rows.sin, n*half)
	for t := range n {
		p := float32(pos0 + t)
		for i, f := range r.invFreq {
			ang := float64(p * f)
			rows.cos[t*half+i] = float32(math.Cos(ang)) * r.scale
			rows.sin[t*half+i] = float32(math.Sin(ang)) * r.scale
		}
	}
	rows.fresh = true
}

func growF(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// applyRope rotates one head vector by the precomputed table row.
func applyRope(x, cs, sn []float32) {
	half := len(cs)
	for i := range half {
		a, b := x[i], x[i+half]
		x[i] = a*cs[i] - b*sn[i]
		x[i+half] = b*cs[i] + a*sn[i]
	}
}

func (m *Model) attention(cache *kvcache.Seq, li, n, pos0 int) {
	c := m.Config
	l := &m.Layers[li]
	ws := &m.ws
	h, hd := c.HiddenSize, c.HeadDim
	qd, kvd := c.Heads*hd, c.KVHeads*hd
	for t := range n {
		compute.RMSNorm(ws.xn[t*h:(t+1)*h], ws.x[t*h:(t+1)*h], l.AttnNorm, c.RMSNormEps, c.NormAddOne)
	}
	m.pool.MatMul(ws.q, ws.xn, n, l.Q)
	m.pool.MatMul(ws.k, ws.xn, n, l.K)
	m.pool.MatMul(ws.v, ws.xn, n, l.V)
	half := hd / 2
	cs, sn := ws.rope[l.rope].cos, ws.rope[l.rope].sin
	for t := range n {
		q, k, v := ws.q[t*qd:(t+1)*qd], ws.k[t*kvd:(t+1)*kvd], ws.v[t*kvd:(t+1)*kvd]
		if l.QBias != nil {
			addTo(q, l.QBias)
			addTo(k, l.KBias)
			addTo(v, l.VBias)
		}
		c0, s0 := cs[t*half:(t+1)*half], sn[t*half:(t+1)*half]
		for hh := range c.Heads {
			qh := q[hh*hd : (hh+1)*hd]
			if l.QNorm != nil {
				compute.RMSNorm(qh, qh, l.QNorm, c.RMSNormEps, c.NormAddOne)
			}
			applyRope(qh, c0, s0)
		}
		for g := range c.KVHeads {
			kh := k[g*hd : (g+1)*hd]
			if l.KNorm != nil {
				compute.RMSNorm(kh, kh, l.KNorm, c.RMSNormEps, c.NormAddOne)
			}
			applyRope(kh, c0, s0)
			cache.Append(li, g, kh, v[g*hd:(g+1)*hd], pos0+t)
		}
	}
	window := 0
	if c.Sliding[li] {
		window = c.SlidingWindow
	}
	group := c.Heads / c.KVHeads
	maxKeys := cache.Head(li, 0).Len()
	for g := 1; g < c.KVHeads; g++ {
		maxKeys = max(maxKeys, cache.Head(li, g).Len())
	}
	m.pool.For(n*c.Heads, 1, func(worker, lo, hi int) {
		scores := m.pool.Scratch(worker, maxKeys)
		for i := lo; i < hi; i++ {
			t, hh := i/c.Heads, i%c.Heads
			kv := cache.Head(li, hh/group)
			q := ws.q[t*qd+hh*hd : t*qd+(hh+1)*hd]
			dst := ws.att[t*qd+hh*hd : t*qd+(hh+1)*hd]
			attendOne(dst, q, kv, hd, pos0+t, window, c.AttnScale, c.AttnSoftcap, scores)
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
func attendOne(dst, q []float32, kv *kvcache.Head, hd, pos, window int, scale, softcap float32, scores []float32) {
	nk := kv.Len()
	lo := 0
	for lo < nk && window > 0 && int(kv.Pos[lo]) <= pos-window {
		lo++
	}
	hi := nk
	for hi > lo && int(kv.Pos[hi-1]) > pos {
		hi--
	}
	s := scores[:hi-lo]
	for j := lo; j < hi; j++ {
		p := int(kv.Pos[j])
		if p > pos || (window > 0 && p <= pos-window) {
			s[j-lo] = float32(math.Inf(-1))
			continue
		}
		v := compute.Dot(q, kv.K[j*hd:(j+1)*hd]) * scale
		if softcap > 0 {
			v = softcap * float32(math.Tanh(float64(v/softcap)))
		}
		s[j-lo] = v
	}
	compute.Softmax(s)
	clear(dst)
	for j := lo; j < hi; j++ {
		if p := s[j-lo]; p != 0 {
			compute.Axpy(dst, p, kv.V[j*hd:(j+1)*hd])
		}
	}
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
