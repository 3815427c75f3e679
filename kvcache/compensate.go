package kvcache

import (
	"fmt"
	"math"
)

// KeepWithExtra is Keep for methods that summarise the tokens they drop
// into one synthetic token (RazorAttention's compensation token,
// arXiv:2407.15891): it retains only the tokens at the given indices
// (ascending, unique) of one head and adds one token with the given key,
// value (HeadDim floats each) and position. The new token takes its place
// in position order among the kept ones, so pos must differ from every
// kept token's position. It is Keep (fresh blocks, the old ones returned
// to the pool) followed by an insertion, so the head then holds
// ⌈(len(idx)+1)/BlockTokens⌉ blocks, counted by the pool's accounting.
//
// The key is stored as given: keys in the cache are post-RoPE, so a key
// already rotated (a mean of rotated keys, say) must not be rotated again,
// and pos only orders the token and masks it causally.
//
// The token stands for count tokens (≥ 1) in attention: its score gains
// ln count, so softmax weighs it as count tokens with this key and value
// would be weighed (the block then also stores a per-token bias, counted
// in its bytes, and attention reads the head through Scores and Mix).
func (s *Seq) KeepWithExtra(layer, head int, idx []int, key, value []float32, pos, count int) error {
	h := s.list(layer, head)
	d := s.pool.cfg.HeadDim
	if len(key) != d || len(value) != d {
		return fmt.Errorf("kvcache: layer %d head %d: extra token of %d and %d elements, want %d", layer, head, len(key), len(value), d)
	}
	if count < 1 {
		return fmt.Errorf("kvcache: layer %d head %d: extra token standing for %d tokens, want ≥ 1", layer, head, count)
	}
	for i, j := range idx {
		if j < 0 || j >= h.n || (i > 0 && j <= idx[i-1]) {
			return fmt.Errorf("kvcache: keep index %d at %d: indices must be ascending within [0, %d)", j, i, h.n)
		}
	}
	bt := s.pool.cfg.BlockTokens
	at := len(idx) // where the extra token goes among the kept ones
	for i, j := range idx {
		p := int(h.blocks[j/bt].pos[j%bt])
		if p == pos {
			return fmt.Errorf("kvcache: layer %d head %d: extra token at position %d, which a kept token holds", layer, head, pos)
		}
		if p > pos && at == len(idx) {
			at = i
		}
	}
	if err := s.Keep(layer, head, idx); err != nil {
		return err
	}
	// Keep left the head in fresh private blocks: make room at at.
	if h.n%bt == 0 {
		b, _ := s.pool.alloc(1, true)
		h.blocks = append(h.blocks, b[0])
	}
	for i := h.n; i > at; i-- {
		dst, src := h.blocks[i/bt], h.blocks[(i-1)/bt]
		dst.k.copyRow(i%bt, &src.k, (i-1)%bt, d)
		dst.v.copyRow(i%bt, &src.v, (i-1)%bt, d)
		dst.pos[i%bt] = src.pos[(i-1)%bt]
		if src.bias != nil || dst.bias != nil {
			s.pool.copyBias(dst, i%bt, src, (i-1)%bt)
		}
	}
	b := h.blocks[at/bt]
	b.k.put(at%bt, key)
	b.v.put(at%bt, value)
	b.pos[at%bt] = int32(pos)
	s.pool.setBias(b, at%bt, float32(math.Log(float64(count))))
	h.n++
	last := h.blocks[(h.n-1)/bt]
	last.n = (h.n-1)%bt + 1
	return nil
}
