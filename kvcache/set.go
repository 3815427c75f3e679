package kvcache

import "fmt"

// Set overwrites token j's key and value in one head (j < Len), copying a
// block shared with other sequences first. It is how a cache assembled
// from reused chunks takes the keys and values recomputed for some of its
// tokens (CacheBlend and its kin): the token keeps its place and position.
func (s *Seq) Set(layer, head, j int, k, v []float32) error {
	h := s.list(layer, head)
	if j < 0 || j >= h.n {
		return fmt.Errorf("kvcache: set of token %d outside [0, %d)", j, h.n)
	}
	if h.shared != nil {
		return fmt.Errorf("kvcache: set in layer %d head %d, which reads another layer's blocks", layer, head)
	}
	bt := s.pool.cfg.BlockTokens
	b := h.blocks[j/bt]
	if s.pool.shared(b) {
		b = s.cow(h, j/bt)
	}
	if b.k.q != nil || b.v.q != nil {
		s.pool.unseal(b)
	}
	if b.k.x != nil || b.v.x != nil {
		s.pool.widenStores(b)
	}
	b.k.put(j%bt, k)
	b.v.put(j%bt, v)
	return nil
}

// SetBias sets the score bias of token j in one head: attention adds w to
// the token's scores, so softmax weighs it by e^w (ln S scales a token's
// attention by S, as APE's scaling factor does).
func (s *Seq) SetBias(layer, head, j int, w float32) error {
	h := s.list(layer, head)
	if j < 0 || j >= h.n {
		return fmt.Errorf("kvcache: bias of token %d outside [0, %d)", j, h.n)
	}
	bt := s.pool.cfg.BlockTokens
	b := h.blocks[j/bt]
	if s.pool.shared(b) {
		b = s.cow(h, j/bt)
	}
	s.pool.setBias(b, j%bt, w)
	return nil
}
