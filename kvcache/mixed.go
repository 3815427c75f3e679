package kvcache

import (
	"fmt"
	"math/bits"
)

// Mixed-precision blocks, for methods that keep each token at a precision
// of its own: MiKV (Yang et al., "No Token Left Behind: Reliable KV Cache
// Compression via Importance-Aware Mixed Precision Quantization",
// arXiv:2402.18096) and ZipCache (He et al., "ZipCache: Accurate and
// Efficient KV Cache Quantization with Salient Token Identification",
// arXiv:2405.14256).
//
// Design: a sealed block may split its tokens into two parts, a high- and a
// low-precision one, each stored like a whole sealed block (KIVI's layout:
// keys per channel over the part's tokens, values per token over groups of
// ValueGroup channels), plus a bitmask that says which part each token is
// in. The block keeps its tokens in position order, so Span, Truncate,
// Fork and Keep work unchanged and attention differs from the full cache
// by rounding only. A part's tokens sit in block order, so the tokens of
// [lo, hi) in one part are a contiguous range of that part: Scores calls
// each part once per block and puts the scores back in order, Mix calls a
// part once per run of consecutive tokens in it.
//
// This is smaller than regrouping a head into a high and a low list of
// blocks, which would break the rule that positions rise along a head and
// every reader (Span, the sliding window, Truncate) that relies on it. The
// cost is a second set of per-channel key scales per mixed block (4·HeadDim
// bytes) and the mask (8 bytes per 64 tokens), both counted.

// mixedRows is one block's keys or values in two precisions.
type mixedRows struct {
	hi, lo rows     // the two parts, each in block order
	mask   []uint64 // bit i set: row i is in hi
	d      int
}

func (m *mixedRows) isHi(i int) bool { return m.mask[i>>6]>>(i&63)&1 == 1 }

// rank returns how many of the rows before i are in hi.
func (m *mixedRows) rank(i int) int {
	n := 0
	for w := range i >> 6 {
		n += bits.OnesCount64(m.mask[w])
	}
	if r := i & 63; r != 0 {
		n += bits.OnesCount64(m.mask[i>>6] & (1<<r - 1))
	}
	return n
}

func (m *mixedRows) bytes() int64 { return m.hi.bytes() + m.lo.bytes() + 8*int64(len(m.mask)) }

func (m *mixedRows) row(i int, dst []float32) {
	if r := m.rank(i); m.isHi(i) {
		m.hi.get(r, dst[:m.d])
	} else {
		m.lo.get(i-r, dst[:m.d])
	}
}

// split returns the ranges of the hi and lo parts that rows [lo, hi) map to.
func (m *mixedRows) split(lo, hi int) (h0, h1, l0, l1 int) {
	h0, h1 = m.rank(lo), m.rank(hi)
	return h0, h1, lo - h0, hi - h1
}

// scores sets dst[j−lo] = scale · qv·row(j) for j in [lo, hi): each part
// scores its rows at once into dst (high part first), then the scores are
// put back into block order.
func (m *mixedRows) scores(dst, qv []float32, lo, hi int, scale float32) {
	h0, h1, l0, l1 := m.split(lo, hi)
	nh, n := h1-h0, hi-lo
	if nh > 0 {
		m.hi.scores(dst[:nh], qv[:m.d], h0, h1, scale)
	}
	if l1 > l0 {
		m.lo.scores(dst[nh:n], qv[:m.d], l0, l1, scale)
	}
	var buf [2 * DefaultBlockTokens]float32
	tmp := scratch(buf[:], n) // stays on the stack: only plain Go reads it
	copy(tmp, dst[:n])
	a, b := 0, nh
	for j := lo; j < hi; j++ {
		if m.isHi(j) {
			dst[j-lo], a = tmp[a], a+1
		} else {
			dst[j-lo], b = tmp[b], b+1
		}
	}
}

// mix adds Σ p[j−lo]·row(j) over j in [lo, hi) to out, one call per run
// of consecutive rows in the same part (consecutive in the part too), so
// that the weights need no gathering.
func (m *mixedRows) mix(out, p []float32, lo, hi int) {
	h := m.rank(lo)
	l := lo - h
	for j := lo; j < hi; {
		high := m.isHi(j)
		e := j + 1
		for e < hi && m.isHi(e) == high {
			e++
		}
		if high {
			m.hi.mix(out[:m.d], p[j-lo:e-lo], h, h+e-j)
			h += e - j
		} else {
			m.lo.mix(out[:m.d], p[j-lo:e-lo], l, l+e-j)
			l += e - j
		}
		j = e
	}
}

// formatAt returns how row i of r is stored.
func (r *rows) formatAt(i int) Format {
	if r.q == nil || r.q.parts == nil {
		return r.format()
	}
	if r.q.parts.isHi(i) {
		return r.q.parts.hi.format()
	}
	return r.q.parts.lo.format()
}

// Sealable returns how many of one head's leading tokens lie in full
// blocks wholly before the last residual tokens: the tokens Quantize and
// QuantizeMixed may seal (those already sealed included).
func (s *Seq) Sealable(layer, head, residual int) int {
	bt := s.pool.cfg.BlockTokens
	return max(0, s.list(layer, head).n-residual) / bt * bt
}

// QuantizeMixed seals, in one layer × KV head, each full block that lies
// wholly before the last residual tokens and is not sealed yet, keeping
// token j in format hi when high[j] and in format lo otherwise (MiKV,
// arXiv:2402.18096; ZipCache, arXiv:2405.14256). high has one entry per
// token of the head. lo must be a quantized format; hi a wider quantized
// format or the pool's own format, which keeps those tokens exact. A block
// whose tokens all share a precision is sealed like Quantize seals it (or
// left as it is, when all are high in the pool's format); the others
// become mixed blocks (see above). Positions are kept. Blocks already
// sealed, by either method, are left as they are.
func (s *Seq) QuantizeMixed(layer, head int, high []bool, hi, lo Format, residual int) error {
	if err := s.checkMixed(hi, lo, residual); err != nil {
		return err
	}
	h := s.list(layer, head)
	if len(high) != h.n {
		return fmt.Errorf("kvcache: mixed quantization of layer %d head %d: %d precision flags for %d tokens", layer, head, len(high), h.n)
	}
	bt, d := s.pool.cfg.BlockTokens, s.pool.cfg.HeadDim
	tmp := make([]float32, 2*bt*d)
	for bi := range s.Sealable(layer, head, residual) / bt {
		b := h.blocks[bi]
		if b.k.q != nil || b.n != bt {
			continue
		}
		flags := high[bi*bt : (bi+1)*bt]
		nh := 0
		for _, f := range flags {
			if f {
				nh++
			}
		}
		if nh == bt && !hi.Quantized() {
			continue // every token stays as it is
		}
		k := s.mixedRows(b, &b.k, flags, nh, hi, lo, false, tmp)
		v := s.mixedRows(b, &b.v, flags, nh, hi, lo, true, tmp)
		s.replaceSealed(h, bi, k, v)
	}
	return nil
}

func (s *Seq) checkMixed(hi, lo Format, residual int) error {
	if !lo.Quantized() {
		return fmt.Errorf("kvcache: mixed quantization: low precision %s is not a quantized format (want int2, int3, int4 or int8)", lo)
	}
	if pf := s.pool.cfg.Format; !hi.Quantized() && hi != pf {
		return fmt.Errorf("kvcache: mixed quantization: high precision %s is neither quantized nor the pool's format %s", hi, pf)
	}
	if hi.Bits() < lo.Bits() {
		return fmt.Errorf("kvcache: mixed quantization: high precision %s is narrower than low precision %s", hi, lo)
	}
	if bt := s.pool.cfg.BlockTokens; residual < 0 || residual%bt != 0 {
		return fmt.Errorf("kvcache: mixed quantization: residual %d is not a non-negative multiple of the %d-token block", residual, bt)
	}
	return nil
}

// replaceSealed seals block bi of h with k and v, or, when the block is
// shared, gives this sequence a fresh sealed copy.
func (s *Seq) replaceSealed(h *headList, bi int, k, v rows) {
	b := h.blocks[bi]
	if !s.pool.shared(b) {
		s.pool.seal(b, k, v)
		return
	}
	fresh, _ := s.pool.alloc(1, true)
	nb := fresh[0]
	s.pool.seal(nb, k, v)
	copy(nb.pos, b.pos)
	for j := range b.n {
		if b.bias != nil {
			s.pool.copyBias(nb, j, b, j)
		}
	}
	nb.n = b.n
	h.blocks[bi] = nb
	s.pool.release([]*block{b})
}

// mixedRows builds the sealed keys (or values, perToken) of block b: one
// format when all flags agree, else a mixed pair of parts.
func (s *Seq) mixedRows(b *block, src *rows, flags []bool, nh int, hi, lo Format, perToken bool, tmp []float32) rows {
	bt, d := len(flags), s.pool.cfg.HeadDim
	switch nh {
	case bt:
		return s.part(src, flags, true, bt, hi, perToken, tmp)
	case 0:
		return s.part(src, flags, false, bt, lo, perToken, tmp)
	}
	m := &mixedRows{mask: make([]uint64, (bt+63)/64), d: d}
	for i, f := range flags {
		if f {
			m.mask[i>>6] |= 1 << (i & 63)
		}
	}
	m.hi = s.part(src, flags, true, nh, hi, perToken, tmp)
	m.lo = s.part(src, flags, false, bt-nh, lo, perToken, tmp)
	return rows{q: &qrows{f: lo, perToken: perToken, full: s.pool.cfg.Format, n: bt, d: d, parts: m}}
}

// part stores the n rows of src whose flag equals want, in block order,
// in format f: quantized, or the pool's format.
func (s *Seq) part(src *rows, flags []bool, want bool, n int, f Format, perToken bool, tmp []float32) rows {
	d, pf := s.pool.cfg.HeadDim, s.pool.cfg.Format
	if !f.Quantized() {
		out := newRows(pf, n*d)
		i := 0
		for j, fl := range flags {
			if fl == want {
				out.copyRow(i, src, j, d)
				i++
			}
		}
		return out
	}
	g := rows{f32: tmp[:n*d]}
	i := 0
	for j, fl := range flags {
		if fl == want {
			src.get(j, g.f32[i*d:(i+1)*d])
			i++
		}
	}
	q := quantizeRows(&g, f, n, d, perToken, tmp[n*d:])
	q.full = pf
	return rows{q: q}
}

// MixedBlockBytes returns the bytes of one block sealed by QuantizeMixed
// with nh of its tokens in hi and the rest in lo, under pool configuration
// cfg: each part's codes (or, for hi in the pool's format, its plain rows),
// per-channel key scales and zeros, per-token value scales and zeros, the
// precision mask of a mixed block, and positions.
func MixedBlockBytes(cfg PoolConfig, hi, lo Format, nh int) int64 {
	bt, d := cfg.BlockTokens, cfg.HeadDim
	if bt <= 0 {
		bt = DefaultBlockTokens
	}
	part := func(f Format, n int) int64 {
		if n == 0 {
			return 0
		}
		if !f.Quantized() {
			return 2 * int64(n*d*cfg.Format.bytesPerValue())
		}
		codes := int64(n * ((d*f.Bits() + 7) / 8))
		return 2*codes + int64(2*2*d) + int64(2*2*n*((d+ValueGroup-1)/ValueGroup))
	}
	n := part(hi, nh) + part(lo, bt-nh) + int64(4*bt)
	if nh > 0 && nh < bt {
		n += 2 * 8 * int64((bt+63)/64) // one mask for keys, one for values
	}
	return n
}
