package kvcache

import (
	"fmt"
	"math"
	"sort"
)

// Cross-layer sharing, the storage of MiniCache (Liu et al., "MiniCache:
// KV Cache Compression in Depth Dimension for Large Language Models",
// NeurIPS 2024, arXiv:2405.14366).
//
// One head of a layer (the target) holds no keys or values of its own for
// its first m tokens: it holds references to the blocks of the same head
// of another layer (the source) and reads token j's key as
// kScale[j]·(source key j) and its value as vScale[j]·(source value j).
// MiniCache stores in the source the merged direction scaled by the
// source's own norms, so the scales are the ratio of the target's norms to
// the source's, and the source itself reads as plain rows. Tokens too
// unlike across the two layers (MiniCache's retained tokens) keep their own
// key and value in the target, in a sorted side list.
//
// Bytes, as Pool.UsedBytes and Seq.StoredBytes count them: the shared
// blocks once (they are reference-counted blocks of the pool), plus, per
// target head, 4 bytes per scale (two per token), and per retained token
// 4 bytes of index plus its key and value in the pool's format (f32 or
// bf16, as a block would hold them).
//
// The blocks are shared as Fork shares blocks: whichever head writes into a
// shared block (a new token appended into the partial last block) first
// copies it, so tokens appended after the merge belong to each layer alone
// and are read as plain rows (index ≥ m). Keep on a target head first
// widens it back into blocks of its own (the merged tokens stay as merged);
// Quantize seals the source and the target separately, which undoes the
// sharing (quantize first and merge never: ShareHead refuses sealed heads).

// sharedHead is what a target head holds besides its (borrowed) blocks.
type sharedHead struct {
	from   int       // index into Seq.heads of the source head
	m      int       // tokens [0, m) read through the scales
	kScale []float32 // [m]
	vScale []float32 // [m]
	ret    []int32   // retained tokens, ascending, each < m
	rk, rv rows      // their keys and values, row i for ret[i], in the pool's format
}

// bytes returns the bytes x's arrays hold (0 for nil).
func (x *sharedHead) bytes() int64 {
	if x == nil {
		return 0
	}
	return 4*int64(len(x.kScale)+len(x.vScale)+len(x.ret)) + x.rk.bytes() + x.rv.bytes()
}

// retained returns the index into x.ret of token j, or −1.
func (x *sharedHead) retained(j int) int {
	i := sort.Search(len(x.ret), func(i int) bool { return int(x.ret[i]) >= j })
	if i < len(x.ret) && int(x.ret[i]) == j {
		return i
	}
	return -1
}

// cut returns x limited to its first n tokens, as a fresh copy (nil when
// nothing is left).
func (x *sharedHead) cut(n, d int) *sharedHead {
	n = min(n, x.m)
	if n <= 0 {
		return nil
	}
	r := sort.Search(len(x.ret), func(i int) bool { return int(x.ret[i]) >= n })
	return &sharedHead{
		from: x.from, m: n,
		kScale: append([]float32(nil), x.kScale[:n]...),
		vScale: append([]float32(nil), x.vScale[:n]...),
		ret:    append([]int32(nil), x.ret[:r]...),
		rk:     x.rk.prefix(r * d),
		rv:     x.rv.prefix(r * d),
	}
}

// prefix returns a copy of r's first n elements (r is full precision).
func (r *rows) prefix(n int) rows {
	if r.b16 != nil {
		return rows{b16: append([]uint16(nil), r.b16[:n]...)}
	}
	return rows{f32: append([]float32(nil), r.f32[:n]...)}
}

// Retained is a token that a target head of ShareHead keeps as its own
// instead of reading the source's: MiniCache's retained tokens.
type Retained struct {
	// Index is the token's index in the head (< Len).
	Index int
	// Key and Value are HeadDim floats each; the key post-RoPE, as cached.
	Key, Value []float32
}

// ShareHead makes head `head` of layer `to` read the blocks of the same
// head of layer `from` (MiniCache, arXiv:2405.14366): its own blocks go
// back to the pool, and token j reads as kScale[j]·key and vScale[j]·value
// of the source's token j, except the retained tokens, which keep the keys
// and values given. Both heads must hold the same tokens (the same
// positions), neither may already share, and the source must be
// unquantized; kScale and vScale hold one finite scale per token.
//
// The source's rows are used as they are: store the merged tokens into it
// first (KeepMergedKV). A refused call changes nothing.
func (s *Seq) ShareHead(from, to, head int, kScale, vScale []float32, retained []Retained) error {
	if err := s.checkShare(from, to, head, kScale, vScale, retained); err != nil {
		return err
	}
	src, dst := s.list(from, head), s.list(to, head)
	x := &sharedHead{from: from*s.pool.cfg.KVHeads + head, m: src.n,
		kScale: append([]float32(nil), kScale...), vScale: append([]float32(nil), vScale...)}
	d := s.pool.cfg.HeadDim
	f := F32
	if s.pool.cfg.Format == BF16 {
		f = BF16
	}
	x.rk, x.rv = newRows(f, len(retained)*d), newRows(f, len(retained)*d)
	for i, r := range retained {
		x.ret = append(x.ret, int32(r.Index))
		x.rk.put(i, r.Key)
		x.rv.put(i, r.Value)
	}
	s.pool.release(dst.blocks)
	dst.blocks = append([]*block(nil), src.blocks...)
	s.pool.retain(dst.blocks)
	dst.shared = x
	s.pool.charge(x.bytes())
	return nil
}

func (s *Seq) checkShare(from, to, head int, kScale, vScale []float32, retained []Retained) error {
	c := s.pool.cfg
	if from == to || from < 0 || to < 0 || from >= c.Layers || to >= c.Layers || head < 0 || head >= c.KVHeads {
		return fmt.Errorf("kvcache: share head %d from layer %d into layer %d: want two different layers of %d and a head of %d", head, from, to, c.Layers, c.KVHeads)
	}
	src, dst := s.list(from, head), s.list(to, head)
	where := fmt.Sprintf("kvcache: share layer %d head %d into layer %d", from, head, to)
	switch {
	case src.shared != nil || dst.shared != nil:
		return fmt.Errorf("%s: a head already shares another layer's blocks", where)
	case src.n != dst.n:
		return fmt.Errorf("%s: %d tokens against %d", where, src.n, dst.n)
	case len(kScale) != src.n || len(vScale) != src.n:
		return fmt.Errorf("%s: %d key and %d value scales for %d tokens", where, len(kScale), len(vScale), src.n)
	}
	for _, b := range src.blocks {
		if b.k.q != nil || b.v.q != nil {
			return fmt.Errorf("%s: the source head is quantized", where)
		}
	}
	bt := c.BlockTokens
	for j := range src.n {
		if src.blocks[j/bt].pos[j%bt] != dst.blocks[j/bt].pos[j%bt] {
			return fmt.Errorf("%s: token %d at position %d against %d", where, j, src.blocks[j/bt].pos[j%bt], dst.blocks[j/bt].pos[j%bt])
		}
		if !finite(kScale[j]) || !finite(vScale[j]) {
			return fmt.Errorf("%s: token %d has scales %v and %v", where, j, kScale[j], vScale[j])
		}
	}
	for i, r := range retained {
		if r.Index < 0 || r.Index >= src.n || (i > 0 && r.Index <= retained[i-1].Index) {
			return fmt.Errorf("%s: retained token %d at %d: indices must be ascending within [0, %d)", where, r.Index, i, src.n)
		}
		if len(r.Key) != c.HeadDim || len(r.Value) != c.HeadDim {
			return fmt.Errorf("%s: retained token %d has %d and %d elements, want %d", where, r.Index, len(r.Key), len(r.Value), c.HeadDim)
		}
	}
	return nil
}

func finite(x float32) bool { return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) }

// SharesFrom reports the layer whose blocks head `head` of `layer` reads
// (ShareHead) and how many of its tokens it reads through them; ok is
// false when the head holds all its tokens itself.
func (s *Seq) SharesFrom(layer, head int) (from, tokens int, ok bool) {
	x := s.list(layer, head).shared
	if x == nil {
		return 0, 0, false
	}
	return x.from / s.pool.cfg.KVHeads, x.m, true
}

// charge adds n bytes held outside blocks to the pool's accounting.
func (p *Pool) charge(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used += n
	p.peak = max(p.peak, p.used)
}

// borrowed reports whether block bi of head i is the source's block at the
// same index, which StoredBytes counts in the source only.
func (s *Seq) borrowed(i, bi int) bool {
	x := s.heads[i].shared
	if x == nil {
		return false
	}
	src := s.heads[x.from].blocks
	return bi < len(src) && src[bi] == s.heads[i].blocks[bi]
}

// unshare gives a target head blocks of its own holding what it reads
// (called by Keep before it copies rows).
func (s *Seq) unshare(h *headList) error {
	if h.shared == nil {
		return nil
	}
	bt, d := s.pool.cfg.BlockTokens, s.pool.cfg.HeadDim
	fresh, err := s.pool.alloc((h.n+bt-1)/bt, true)
	if err != nil {
		return err
	}
	v := View{h: h, bt: bt, d: d}
	buf := make([]float32, d)
	for j := range h.n {
		b := fresh[j/bt]
		v.Key(j, buf)
		b.k.put(j%bt, buf)
		v.Value(j, buf)
		b.v.put(j%bt, buf)
		b.pos[j%bt] = h.blocks[j/bt].pos[j%bt]
		b.n = j%bt + 1
	}
	s.pool.release(h.blocks)
	s.dropShared(h)
	h.blocks = fresh
	return nil
}

// cutShared limits a target head's shared part to its first n tokens
// (Truncate, Fork).
func (s *Seq) cutShared(h *headList, n int) {
	if h.shared == nil || n >= h.shared.m {
		return
	}
	x := h.shared.cut(n, s.pool.cfg.HeadDim)
	s.dropShared(h)
	h.shared = x
	s.pool.charge(x.bytes())
}

// cloneShared returns a copy of x charged to the pool (Fork).
func (s *Seq) cloneShared(x *sharedHead) *sharedHead {
	if x == nil {
		return nil
	}
	c := x.cut(x.m, s.pool.cfg.HeadDim)
	s.pool.charge(c.bytes())
	return c
}

// dropShared forgets a head's shared part and its bytes.
func (s *Seq) dropShared(h *headList) {
	if h.shared != nil {
		s.pool.charge(-h.shared.bytes())
		h.shared = nil
	}
}

// sharedKey reads token j's key of a target head into dst; it reports
// false when j is not read through the source (plain rows).
func (v View) sharedKey(j int, dst []float32) bool {
	return v.sharedRow(j, dst, true)
}

// sharedValue is sharedKey for values.
func (v View) sharedValue(j int, dst []float32) bool {
	return v.sharedRow(j, dst, false)
}

func (v View) sharedRow(j int, dst []float32, key bool) bool {
	x := v.h.shared
	if x == nil || j >= x.m {
		return false
	}
	dst = dst[:v.d]
	if r := x.retained(j); r >= 0 {
		own := &x.rv
		if key {
			own = &x.rk
		}
		own.get(r, dst)
		return true
	}
	b := v.h.blocks[j/v.bt]
	sc := x.vScale[j]
	if key {
		b.k.get(j%v.bt, dst)
		sc = x.kScale[j]
	} else {
		b.v.get(j%v.bt, dst)
	}
	for c := range dst {
		dst[c] *= sc
	}
	return true
}

// sharedScores is Scores for a target head: the source's rows scored
// block by block, scaled per token, retained tokens scored on their own
// keys.
func (v View) sharedScores(dst, q []float32, lo, hi int, scale float32) {
	x := v.h.shared
	for a := lo; a < hi; {
		bi, off := a/v.bt, a%v.bt
		end := min(hi-a, v.bt-off)
		v.h.blocks[bi].k.scores(dst[a-lo:a-lo+end], q, off, off+end, scale)
		a += end
	}
	for j := lo; j < min(hi, x.m); j++ {
		dst[j-lo] *= x.kScale[j]
	}
	for i := sort.Search(len(x.ret), func(i int) bool { return int(x.ret[i]) >= lo }); i < len(x.ret) && int(x.ret[i]) < hi; i++ {
		j := int(x.ret[i]) - lo
		x.rk.scores(dst[j:j+1], q, i, i+1, scale)
	}
}

// sharedMix is Mix for a target head: each weight scaled by the token's
// value scale before the source's rows mix, retained tokens mixed from
// their own values.
func (v View) sharedMix(out, p []float32, lo, hi int) {
	x := v.h.shared
	var buf [256]float32
	w := buf[:]
	if v.bt > len(buf) {
		w = make([]float32, v.bt)
	}
	for a := lo; a < hi; {
		bi, off := a/v.bt, a%v.bt
		end := min(hi-a, v.bt-off)
		ws := w[:end]
		for t := range ws {
			j := a + t
			ws[t] = p[j-lo]
			if j < x.m {
				ws[t] *= x.vScale[j]
			}
		}
		for i := sort.Search(len(x.ret), func(i int) bool { return int(x.ret[i]) >= a }); i < len(x.ret) && int(x.ret[i]) < a+end; i++ {
			ws[int(x.ret[i])-a] = 0
		}
		v.h.blocks[bi].v.mix(out, ws, off, off+end)
		a += end
	}
	for i := sort.Search(len(x.ret), func(i int) bool { return int(x.ret[i]) >= lo }); i < len(x.ret) && int(x.ret[i]) < hi; i++ {
		j := int(x.ret[i]) - lo
		x.rv.mix(out, p[j:j+1], i, i+1)
	}
}
