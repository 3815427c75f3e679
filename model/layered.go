package model

import (
	"fmt"

	"github.com/kvserve/kvserve/kvcache"
)

// ForwardLayered is ForwardObserved for a prompt computed layer by layer:
// every token passes layer 0 (in chunks of ChunkSize, as Forward takes
// them), then layer 1, and so on, the hidden states of the whole prompt
// carried between layers. After layer l holds the whole prompt, done(l)
// runs (when not nil) with the model locked: it may read and compress
// layer l of cache — no later layer depends on it — so that a press never
// holds more than its compressed layers and one full one, as kvpress's
// per-layer forward hooks do. A done error stops the pass and is returned.
// The tokens, keys, values and logits are those Forward computes: each
// token meets the same arithmetic, chunk by chunk.
//
// Before each layer the pool's budget must hold that layer's new tokens
// (Seq.ReserveLayer), so a done that compresses keeps a long prompt within
// a budget its full cache would exceed; otherwise the pass stops with
// ErrBudget (wrapped).
func (m *Model) ForwardLayered(cache *kvcache.Seq, tokens []int, out Output, obs *Observer, done func(layer int) error) ([]float32, error) {
	if out == AllLogits {
		return nil, fmt.Errorf("model: a layer-by-layer pass returns the last logits or none")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.Config
	steps := m.ws.one[:]
	defer clear(steps)
	steps[0] = Step{Cache: cache, Tokens: tokens, Observe: obs}
	if err := m.checkPositions(steps[0]); err != nil {
		return nil, err
	}
	h, n := c.HiddenSize, len(tokens)
	pos0 := cache.Next()
	x := make([]float32, n*h) // the prompt's hidden states between layers
	for t, id := range tokens {
		row := x[t*h : (t+1)*h]
		m.Embed.Row(id, row)
		if c.EmbedScale != 1 {
			for j := range row {
				row[j] *= c.EmbedScale
			}
		}
	}
	ws := &m.ws
	for l := range m.Layers {
		if err := cache.ReserveLayer(l, n); err != nil {
			return nil, fmt.Errorf("model: layer %d: %w", l, err)
		}
		for start := 0; start < n; start += ChunkSize {
			end := min(n, start+ChunkSize)
			k := end - start
			ws.ensure(c, k, len(m.ropes))
			steps[0].Tokens = tokens[start:end]
			copy(ws.x[:k*h], x[start*h:end*h])
			for t := range k {
				ws.seq[t], ws.pos[t] = 0, pos0+start+t
			}
			m.ropeRows(k)
			if obs != nil {
				m.recordHidden(steps, l, k)
			}
			m.attention(steps, l, k, obs != nil)
			m.mlp(&m.Layers[l], k)
			copy(x[start*h:end*h], ws.x[:k*h])
		}
		if done != nil {
			if err := done(l); err != nil {
				return nil, err
			}
		}
	}
	cache.Advance(n)
	if out != LastLogits || n == 0 {
		return nil, nil
	}
	v := c.VocabSize
	if cap(ws.logits) < v {
		ws.logits = make([]float32, v)
	}
	ws.ensure(c, 1, len(m.ropes))
	copy(ws.x[:h], x[(n-1)*h:])
	m.logits(ws.logits[:v], 0, 1)
	return ws.logits[:v], nil
}

// checkPositions checks a step's tokens and positions as checkSteps does,
// without reserving the whole pass's blocks.
func (m *Model) checkPositions(s Step) error {
	c := m.Config
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
	return nil
}
