package codec

import (
	"fmt"

	"github.com/kvserve/kvserve/kvcache"
)

// FromSeq copies tokens [start, start+n) of s, every layer and KV head,
// into a chunk. s must hold every position below start+n in every head, in
// order (a cache no press has thinned).
func FromSeq(s *kvcache.Seq, start, n int) (*Chunk, error) {
	c := NewChunk(s.Layers(), s.KVHeads(), s.HeadDim(), n, start)
	for l := range c.Layers {
		for h := range c.Heads {
			v := s.View(l, h)
			if v.Len() < start+n {
				return nil, fmt.Errorf("codec: layer %d head %d holds %d tokens, fewer than %d", l, h, v.Len(), start+n)
			}
			for t := range n {
				if p := v.Pos(start + t); p != start+t {
					return nil, fmt.Errorf("codec: layer %d head %d: token %d is at position %d; only whole caches are encoded", l, h, start+t, p)
				}
				k, val := c.Row(l, h, t)
				v.Key(start+t, k)
				v.Value(start+t, val)
			}
		}
	}
	return c, nil
}

// AppendTo appends the chunk's tokens to s, whose next position must be
// the chunk's start, and advances s past them. It checks the pool's budget
// first and appends nothing when the tokens do not fit.
func (c *Chunk) AppendTo(s *kvcache.Seq) error {
	if s.Layers() != c.Layers || s.KVHeads() != c.Heads || s.HeadDim() != c.Dim {
		return fmt.Errorf("codec: chunk of %d layers × %d heads × %d dims does not fit a cache of %d × %d × %d",
			c.Layers, c.Heads, c.Dim, s.Layers(), s.KVHeads(), s.HeadDim())
	}
	if s.Next() != c.Start {
		return fmt.Errorf("codec: chunk starts at position %d, the cache at %d", c.Start, s.Next())
	}
	if err := s.Reserve(c.Tokens); err != nil {
		return err
	}
	for l := range c.Layers {
		for h := range c.Heads {
			for t := range c.Tokens {
				k, v := c.Row(l, h, t)
				s.Append(l, h, k, v, c.Start+t)
			}
		}
	}
	s.Advance(c.Tokens)
	return nil
}
