package model

import (
	"fmt"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// Recompute chooses, layer by layer, which tokens of a partly reused
// prompt go on being computed. ForwardRecompute calls it at each layer with
// the positions of the tokens computed at that layer and their fresh keys
// and values (after RoPE, one row of KVHeads·HeadDim floats per token),
// before they are written over the cached ones — the cache still holds the
// old keys and values, so a method can measure how far they moved. It
// returns the indices into pos, ascending, of the tokens that go through
// this layer's attention and MLP and on to the next layer; the last token
// of the prompt always goes on (its logits are the output). A nil
// Recompute keeps every token.
type Recompute func(layer int, pos []int, keys, values []float32) []int

// ForwardRecompute runs the tokens at positions active of a prompt whose
// keys and values are already in cache — reused from elsewhere, perhaps
// only approximately right (a chunk computed on its own, keys re-rotated
// to new positions) — and returns the logits of the prompt's last token.
//
// cache must hold every token of the prompt, in every head, at positions
// 0 … len(tokens)−1 (placeholders for tokens that were never computed),
// and active, ascending, must name every such placeholder and the last
// token. At each layer the tokens still active compute their keys and
// values, which replace the cached ones; sel may then narrow them, and only
// those that stay attend — to the whole cache, causally — and go through
// the MLP. Tokens that left keep the keys and values they have at the
// layers above. This is the recompute step of CacheBlend (arXiv:2405.16444)
// and its kin; with sel nil and active the placeholders it concatenates
// cached chunks as they are.
func (m *Model) ForwardRecompute(cache *kvcache.Seq, tokens, active []int, sel Recompute) ([]float32, error) {
	return m.ForwardRecomputeObserved(cache, tokens, active, sel, nil)
}

// ForwardRecomputeObserved is ForwardRecompute that also records, in obs,
// the post-RoPE queries of the kept tokens at positions ≥ obs.From, layer
// by layer (Observer.Queries; the other Observer fields are not filled).
// A method reads them to see what a prompt's later tokens attend to.
func (m *Model) ForwardRecomputeObserved(cache *kvcache.Seq, tokens, active []int, sel Recompute, obs *Observer) ([]float32, error) {
	c := m.Config
	if len(tokens) == 0 {
		return nil, fmt.Errorf("model: recompute of an empty prompt")
	}
	if len(tokens) > c.MaxPositions {
		return nil, fmt.Errorf("model: prompt of %d tokens is past the model's context of %d", len(tokens), c.MaxPositions)
	}
	if cache.Next() != len(tokens) {
		return nil, fmt.Errorf("model: recompute needs the cache to hold the %d-token prompt; it is at position %d", len(tokens), cache.Next())
	}
	for li := range c.Layers {
		for g := range c.KVHeads {
			if cache.Len(li, g) != len(tokens) {
				return nil, fmt.Errorf("model: recompute needs every head to hold the %d-token prompt; layer %d head %d holds %d", len(tokens), li, g, cache.Len(li, g))
			}
		}
	}
	if len(active) == 0 || active[len(active)-1] != len(tokens)-1 {
		return nil, fmt.Errorf("model: recompute needs the prompt's last token among the active ones")
	}
	for i, j := range active {
		if j < 0 || (i > 0 && j <= active[i-1]) {
			return nil, fmt.Errorf("model: active token %d at index %d: indices must be ascending within [0, %d)", j, i, len(tokens))
		}
	}
	for i, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return nil, fmt.Errorf("model: token %d at index %d is outside the vocabulary of %d", t, i, c.VocabSize)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := c.HiddenSize
	n := len(active)
	ws := &m.ws
	ws.ensure(c, n, len(m.ropes))
	ids := make([]int, n)
	for t, j := range active {
		ids[t], ws.seq[t], ws.pos[t] = tokens[j], 0, j
		m.Embed.Row(tokens[j], ws.x[t*h:(t+1)*h])
		if c.EmbedScale != 1 {
			for k := range ws.x[t*h : (t+1)*h] {
				ws.x[t*h+k] *= c.EmbedScale
			}
		}
	}
	steps := ws.one[:]
	steps[0] = Step{Cache: cache, Tokens: ids, Observe: obs}
	defer clear(steps)
	m.ropeRows(n)
	for li := range m.Layers {
		var err error
		if n, err = m.recomputeLayer(steps, li, n, sel); err != nil {
			return nil, err
		}
		m.mlp(&m.Layers[li], n)
	}
	v := c.VocabSize
	if cap(ws.logits) < v {
		ws.logits = make([]float32, v)
	}
	logits := ws.logits[:v]
	m.logits(logits, n-1, 1)
	return logits, nil
}

// recomputeLayer is attention for ForwardRecompute: the n active tokens
// compute keys and values and write them into the cache, sel narrows them,
// and those kept attend. It returns how many were kept.
func (m *Model) recomputeLayer(steps []Step, li, n int, sel Recompute) (int, error) {
	c := m.Config
	l := &m.Layers[li]
	ws := &m.ws
	cache := steps[0].Cache
	h, hd := c.HiddenSize, c.HeadDim
	qd, kvd := c.Heads*hd, c.KVHeads*hd
	m.qkv(li, n, nil)
	var keep []int
	if sel != nil {
		keep = sel(li, ws.pos[:n], ws.k[:n*kvd], ws.v[:n*kvd])
		for i, t := range keep {
			if t < 0 || t >= n || (i > 0 && t <= keep[i-1]) {
				return 0, fmt.Errorf("model: recompute at layer %d kept index %d at %d: indices must be ascending within [0, %d)", li, t, i, n)
			}
		}
		if len(keep) == 0 || keep[len(keep)-1] != n-1 {
			keep = append(keep, n-1) // the last token always goes on
		}
	}
	for t := range n {
		for g := range c.KVHeads {
			if err := cache.Set(li, g, ws.pos[t], ws.k[t*kvd+g*hd:t*kvd+(g+1)*hd], ws.v[t*kvd+g*hd:t*kvd+(g+1)*hd]); err != nil {
				return 0, fmt.Errorf("model: recompute: %w", err)
			}
		}
	}
	if keep != nil && len(keep) < n {
		ids := steps[0].Tokens
		for i, t := range keep {
			if i == t {
				continue
			}
			copy(ws.x[i*h:(i+1)*h], ws.x[t*h:(t+1)*h])
			copy(ws.q[i*qd:(i+1)*qd], ws.q[t*qd:(t+1)*qd])
			ws.pos[i], ids[i] = ws.pos[t], ids[t]
		}
		n = len(keep)
		steps[0].Tokens = ids[:n]
		m.ropeRows(n) // the next layers rotate the n kept tokens
	}
	if steps[0].Observe != nil {
		m.recordQueries(steps, li, n)
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
	return n, nil
}
