// Package kvcache holds the keys and values that attention reads back.
//
// A Seq is one sequence's cache. Every layer keeps, for each KV head (never
// per query head: grouped-query attention stays grouped), its own list of
// tokens with their keys, values and original positions, so later code can
// keep different tokens in different heads.
package kvcache

import "fmt"

// Head is the cache of one KV head in one layer. K and V hold Len()·dim
// floats, token after token; Pos holds each token's original position.
type Head struct {
	K, V []float32
	Pos  []int32
}

// Len returns the number of cached tokens.
func (h *Head) Len() int { return len(h.Pos) }

// Seq is the KV cache of one sequence.
type Seq struct {
	layers  [][]Head // [layer][kv head]
	headDim int
	next    int
}

// New returns an empty cache for a model with the given shape.
func New(layers, kvHeads, headDim int) *Seq {
	s := &Seq{layers: make([][]Head, layers), headDim: headDim}
	for l := range s.layers {
		s.layers[l] = make([]Head, kvHeads)
	}
	return s
}

// Layers returns the number of layers.
func (s *Seq) Layers() int { return len(s.layers) }

// KVHeads returns the number of KV heads per layer.
func (s *Seq) KVHeads() int { return len(s.layers[0]) }

// HeadDim returns the size of one key or value vector.
func (s *Seq) HeadDim() int { return s.headDim }

// Next returns the position the next token will take.
func (s *Seq) Next() int { return s.next }

// Advance moves the next position on by n, once a forward pass has appended
// n tokens to every layer.
func (s *Seq) Advance(n int) { s.next += n }

// Head returns the cache of one KV head of one layer. Callers read it; only
// Seq's methods change it.
func (s *Seq) Head(layer, head int) *Head { return &s.layers[layer][head] }

// Append adds one token's key and value (each headDim floats) to one head.
func (s *Seq) Append(layer, head int, k, v []float32, pos int) {
	h := &s.layers[layer][head]
	h.K = append(h.K, k[:s.headDim]...)
	h.V = append(h.V, v[:s.headDim]...)
	h.Pos = append(h.Pos, int32(pos))
}

// Truncate forgets every token at position ≥ pos, in every head, and makes
// pos the next position. It lets a new prompt that shares the first pos
// tokens with the cached one reuse them.
func (s *Seq) Truncate(pos int) error {
	if pos < 0 || pos > s.next {
		return fmt.Errorf("kvcache: truncate to %d outside [0, %d]", pos, s.next)
	}
	for l := range s.layers {
		for hi := range s.layers[l] {
			h := &s.layers[l][hi]
			n := len(h.Pos)
			for n > 0 && int(h.Pos[n-1]) >= pos {
				n--
			}
			h.K, h.V, h.Pos = h.K[:n*s.headDim], h.V[:n*s.headDim], h.Pos[:n]
		}
	}
	s.next = pos
	return nil
}

// Tokens returns the number of tokens cached in the largest head.
func (s *Seq) Tokens() int {
	n := 0
	for l := range s.layers {
		for hi := range s.layers[l] {
			n = max(n, s.layers[l][hi].Len())
		}
	}
	return n
}

// Bytes returns the bytes that the cached keys, values and positions take.
func (s *Seq) Bytes() int64 {
	var b int64
	for l := range s.layers {
		for hi := range s.layers[l] {
			h := &s.layers[l][hi]
			b += int64(len(h.K)+len(h.V))*4 + int64(len(h.Pos))*4
		}
	}
	return b
}
