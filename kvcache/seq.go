package kvcache

import (
	"fmt"
	"sort"
)

// headList is one layer × KV head of a sequence: every block but the last
// is full, and positions rise along the list.
type headList struct {
	blocks []*block
	n      int // tokens
	// shared is set while the head reads another layer's blocks
	// (MiniCache's cross-layer merge; see crosslayer.go).
	shared *sharedHead
}

// Seq is the KV cache of one sequence. A Seq is used by one goroutine at a
// time; sequences sharing blocks may live on different goroutines.
type Seq struct {
	pool   *Pool
	heads  []headList // [layer*KVHeads + head]
	next   int
	closed bool
}

// New returns an empty sequence on a private pool without a budget, for
// callers that run one sequence at a time.
func New(layers, kvHeads, headDim int) *Seq {
	return NewPool(PoolConfig{Layers: layers, KVHeads: kvHeads, HeadDim: headDim}).NewSeq()
}

// NewSeq returns an empty sequence drawing blocks from p.
func (p *Pool) NewSeq() *Seq {
	return &Seq{pool: p, heads: make([]headList, p.cfg.Layers*p.cfg.KVHeads)}
}

// Pool returns the pool the sequence draws from.
func (s *Seq) Pool() *Pool { return s.pool }

// Layers returns the number of layers.
func (s *Seq) Layers() int { return s.pool.cfg.Layers }

// KVHeads returns the number of KV heads per layer.
func (s *Seq) KVHeads() int { return s.pool.cfg.KVHeads }

// HeadDim returns the size of one key or value vector.
func (s *Seq) HeadDim() int { return s.pool.cfg.HeadDim }

// Next returns the position the next token will take.
func (s *Seq) Next() int { return s.next }

// Advance moves the next position on by n, once a forward pass has appended
// n tokens to every head.
func (s *Seq) Advance(n int) { s.next += n }

func (s *Seq) list(layer, head int) *headList {
	return &s.heads[layer*s.pool.cfg.KVHeads+head]
}

// Len returns the tokens cached in one head.
func (s *Seq) Len(layer, head int) int { return s.list(layer, head).n }

// Tokens returns the tokens cached in the fullest head.
func (s *Seq) Tokens() int {
	n := 0
	for i := range s.heads {
		n = max(n, s.heads[i].n)
	}
	return n
}

// Reserve checks that n more tokens in every head fit the pool's budget,
// so that the Appends of the next forward pass stay within it; it returns
// ErrBudget (wrapped) when they do not. It allocates nothing: the caller
// (one forward pass at a time per pool) appends right after.
func (s *Seq) Reserve(n int) error {
	bt := s.pool.cfg.BlockTokens
	need := 0
	for i := range s.heads {
		h := &s.heads[i]
		need += max(0, (h.n+n+bt-1)/bt-len(h.blocks))
		if h.n%bt != 0 && s.pool.shared(h.blocks[h.n/bt]) {
			need++ // copy-on-write of the partial last block
		}
	}
	if need == 0 {
		return nil
	}
	return s.pool.fits(need) // a check only: Append allocates as it goes
}

// ReserveLayer is Reserve for the heads of one layer: a prefill that
// computes the prompt layer by layer needs one layer's blocks at a time.
func (s *Seq) ReserveLayer(l, n int) error {
	bt := s.pool.cfg.BlockTokens
	need := 0
	for g := range s.pool.cfg.KVHeads {
		h := s.list(l, g)
		need += max(0, (h.n+n+bt-1)/bt-len(h.blocks))
		if h.n%bt != 0 && s.pool.shared(h.blocks[h.n/bt]) {
			need++
		}
	}
	if need == 0 {
		return nil
	}
	return s.pool.fits(need)
}

// Append adds one token's key and value (each HeadDim floats) to one head.
func (s *Seq) Append(layer, head int, k, v []float32, pos int) {
	h := s.list(layer, head)
	bt := s.pool.cfg.BlockTokens
	i := h.n % bt
	if i == 0 && h.n/bt == len(h.blocks) {
		b, _ := s.pool.alloc(1, true)
		h.blocks = append(h.blocks, b[0])
	}
	b := h.blocks[h.n/bt]
	if s.pool.shared(b) {
		b = s.cow(h, h.n/bt)
	}
	if b.k.q != nil || b.v.q != nil { // truncated into a sealed block
		s.pool.unseal(b)
	}
	if b.k.x != nil || b.v.x != nil { // likewise, a ThinK or GEAR block (rowstore.go)
		s.pool.widenStores(b)
	}
	b.k.put(i, k)
	b.v.put(i, v)
	b.pos[i] = int32(pos)
	if b.bias != nil {
		b.bias[i] = 0
	}
	b.n = i + 1
	h.n++
}

// cow replaces block bi of h, shared with others, by a private copy.
func (s *Seq) cow(h *headList, bi int) *block {
	old := h.blocks[bi]
	fresh, _ := s.pool.alloc(1, true)
	b := fresh[0]
	d := s.pool.cfg.HeadDim
	for j := range old.n {
		b.k.copyRow(j, &old.k, j, d)
		b.v.copyRow(j, &old.v, j, d)
		if old.bias != nil {
			s.pool.copyBias(b, j, old, j)
		}
	}
	copy(b.pos, old.pos[:old.n])
	b.n = old.n
	h.blocks[bi] = b
	s.pool.release([]*block{old})
	return b
}

// Truncate forgets every token at position ≥ pos, in every head, and makes
// pos the next position. A new prompt that shares its first pos tokens with
// the cached one then reuses them.
func (s *Seq) Truncate(pos int) error {
	if pos < 0 || pos > s.next {
		return fmt.Errorf("kvcache: truncate to %d outside [0, %d]", pos, s.next)
	}
	bt := s.pool.cfg.BlockTokens
	for i := range s.heads {
		h := &s.heads[i]
		keep := sort.Search(h.n, func(j int) bool { return int(h.blocks[j/bt].pos[j%bt]) >= pos })
		s.shrink(h, keep)
	}
	s.next = pos
	return nil
}

// shrink keeps the first n tokens of h.
func (s *Seq) shrink(h *headList, n int) {
	s.cutShared(h, n)
	bt := s.pool.cfg.BlockTokens
	nb := (n + bt - 1) / bt
	s.pool.release(h.blocks[nb:])
	clear(h.blocks[nb:])
	h.blocks = h.blocks[:nb]
	h.n = n
	if r := n % bt; r != 0 && nb > 0 {
		b := h.blocks[nb-1]
		if s.pool.shared(b) {
			b = s.cow(h, nb-1)
		}
		b.n = r
	}
}

// Fork returns a new sequence that shares this one's tokens at positions
// below n (n ≤ Next()) by reference: no keys or values are copied until
// one of the two writes into a shared block.
func (s *Seq) Fork(n int) (*Seq, error) {
	if n < 0 || n > s.next {
		return nil, fmt.Errorf("kvcache: fork of %d tokens outside [0, %d]", n, s.next)
	}
	f := s.pool.NewSeq()
	bt := s.pool.cfg.BlockTokens
	for i := range s.heads {
		h := &s.heads[i]
		keep := sort.Search(h.n, func(j int) bool { return int(h.blocks[j/bt].pos[j%bt]) >= n })
		nb := (keep + bt - 1) / bt
		fh := &f.heads[i]
		fh.blocks = append([]*block(nil), h.blocks[:nb]...)
		s.pool.retain(fh.blocks)
		fh.shared = f.cloneShared(h.shared)
		fh.n = nb * bt
		if nb > 0 {
			fh.n = min(fh.n, h.n)
		}
		f.shrink(fh, keep)
	}
	f.next = n
	return f, nil
}

// Keep retains only the tokens at the given indices (ascending, unique) of
// one head and returns the freed blocks to the pool. It is how eviction
// frees memory for real.
//
// A head whose blocks are its own and plain (not sealed, pruned or shared
// with another sequence) is compacted in place: kept token i moves to slot
// i (never later than where it was), and the blocks past the last kept
// token go back to the pool, so Keep allocates nothing. Otherwise the kept
// tokens are copied into fresh blocks drawn within the pool's budget
// (ErrBudget, the head unchanged, when they do not fit), and the old
// blocks are released.
func (s *Seq) Keep(layer, head int, idx []int) error {
	h := s.list(layer, head)
	for i, j := range idx {
		if j < 0 || j >= h.n || (i > 0 && j <= idx[i-1]) {
			return fmt.Errorf("kvcache: keep index %d at %d: indices must be ascending within [0, %d)", j, i, h.n)
		}
	}
	if err := s.unshare(h); err != nil {
		return err
	}
	bt := s.pool.cfg.BlockTokens
	nb := (len(idx) + bt - 1) / bt
	d := s.pool.cfg.HeadDim
	if s.inPlace(h) {
		for i, j := range idx {
			if i == j {
				continue
			}
			dst, src := h.blocks[i/bt], h.blocks[j/bt]
			dst.k.copyRow(i%bt, &src.k, j%bt, d)
			dst.v.copyRow(i%bt, &src.v, j%bt, d)
			dst.pos[i%bt] = src.pos[j%bt]
			if src.bias != nil || dst.bias != nil {
				s.pool.copyBias(dst, i%bt, src, j%bt)
			}
		}
		s.pool.release(h.blocks[nb:])
		clear(h.blocks[nb:])
		h.blocks, h.n = h.blocks[:nb], len(idx)
		for bi, b := range h.blocks {
			b.n = min(bt, len(idx)-bi*bt)
		}
		return nil
	}
	fresh, err := s.pool.alloc(nb, false)
	if err != nil {
		return fmt.Errorf("kvcache: layer %d head %d: keeping %d tokens: %w", layer, head, len(idx), err)
	}
	for i, j := range idx {
		dst, src := fresh[i/bt], h.blocks[j/bt]
		dst.k.copyRow(i%bt, &src.k, j%bt, d)
		dst.v.copyRow(i%bt, &src.v, j%bt, d)
		dst.pos[i%bt] = src.pos[j%bt]
		if src.bias != nil {
			s.pool.copyBias(dst, i%bt, src, j%bt)
		}
		dst.n = i%bt + 1
	}
	s.pool.release(h.blocks)
	h.blocks, h.n = fresh, len(idx)
	return nil
}

// inPlace reports whether every block of h is held by h alone and stores
// plain rows, so that Keep may compact it without new blocks.
func (s *Seq) inPlace(h *headList) bool {
	for _, b := range h.blocks {
		if s.pool.shared(b) || b.k.q != nil || b.v.q != nil || b.k.x != nil || b.v.x != nil {
			return false
		}
	}
	return true
}

// AdoptLayer makes layer l of s, whose heads must be empty, share src's
// tokens of that layer by reference (no copy until one of the two writes),
// as Fork does for every layer. A prefill that computes the prompt layer
// by layer hands each finished layer to the sequences that compress it.
func (s *Seq) AdoptLayer(src *Seq, l int) error {
	if src.pool != s.pool {
		return fmt.Errorf("kvcache: adopt layer %d from a sequence of another pool", l)
	}
	for g := range s.pool.cfg.KVHeads {
		h, o := s.list(l, g), src.list(l, g)
		if h.n != 0 || len(h.blocks) != 0 || h.shared != nil {
			return fmt.Errorf("kvcache: adopt layer %d head %d: the head already holds %d tokens", l, g, h.n)
		}
		if o.shared != nil {
			return fmt.Errorf("kvcache: adopt layer %d head %d: the source head reads another layer", l, g)
		}
		h.blocks = append([]*block(nil), o.blocks...)
		s.pool.retain(h.blocks)
		h.n = o.n
	}
	return nil
}

// ReleaseLayer returns the blocks of layer l's heads to the pool and leaves
// them empty: a layer-by-layer prefill drops a finished layer once the
// sequences that keep it have adopted it.
func (s *Seq) ReleaseLayer(l int) {
	for g := range s.pool.cfg.KVHeads {
		h := s.list(l, g)
		s.pool.release(h.blocks)
		s.dropShared(h)
		*h = headList{}
	}
}

// LayerBytes returns the bytes layer l's heads hold, as StoredBytes counts
// them.
func (s *Seq) LayerBytes(l int) int64 {
	var n int64
	for g := range s.pool.cfg.KVHeads {
		i := l*s.pool.cfg.KVHeads + g
		for bi, b := range s.heads[i].blocks {
			if !s.borrowed(i, bi) {
				n += b.bytes()
			}
		}
		n += s.heads[i].shared.bytes()
	}
	return n
}

// Release returns all of the sequence's blocks to the pool. The sequence
// must not be used afterwards; a second Release does nothing.
func (s *Seq) Release() {
	if s.closed {
		return
	}
	s.closed = true
	for i := range s.heads {
		s.pool.release(s.heads[i].blocks)
		s.dropShared(&s.heads[i])
		s.heads[i] = headList{}
	}
}

// Bytes returns the bytes of the blocks this sequence holds, as stored
// (a block shared with another sequence counts in both): BlockBytes for a
// full-precision block, codes, float16 scales and zeros and positions for
// one sealed by Quantize.
func (s *Seq) Bytes() int64 { return s.StoredBytes() }
