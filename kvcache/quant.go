package kvcache

import (
	"fmt"
	"math"

	"github.com/kvserve/kvserve/compute"
)

// KIVI's block quantization (Liu et al., "KIVI: A Tuning-Free Asymmetric
// 2bit Quantization for KV Cache", ICML 2024, arXiv:2402.02750).
//
// A sealed (full) block of BlockTokens tokens is one quantization group
// along the token axis. Keys are quantized per channel: each of the head_dim
// channels gets its own scale and zero over the block's tokens, because key
// outliers live in fixed channels. Values are quantized per token, in
// groups of ValueGroup channels. Codes are asymmetric: x̂ = zero + scale·c
// with c in [0, 2^bits − 1]; scale and zero are stored as float16 (and
// counted), the zero rounded down and the scale up so that every element
// of the group lies in [zero, zero + (2^bits − 1)·scale] and
// |x − x̂| ≤ scale/2. Codes are packed row by row (token-major), little-
// endian within a byte: channel c of a row starts at bit c·bits.
//
// Choices where the paper leaves room:
//   - the group along tokens is the block (BlockTokens, 32 by default);
//   - the full-precision residual is whole blocks: Quantize seals every
//     full block that lies entirely before the last `residual` tokens, so
//     between residual and residual + BlockTokens − 1 of the most recent
//     tokens stay in the pool's format (KIVI keeps 0…R−1 and quantizes R
//     at a time; here at least R stay exact);
//   - blocks already quantized are left as they are, whatever their
//     format: Quantize is cheap to call again after every decode step;
//   - writing into a quantized block (a block truncated into, or one the
//     pool hands out again) first widens it back to full precision;
//   - Seq.Keep on a quantized head dequantizes the kept tokens into fresh
//     full-precision blocks; quantize again afterwards (eviction, then
//     quantization, is the order the kivi presses compose in).

// ValueGroup is the channels per value quantization group (KIVI's G = 32).
// A head_dim that is not a multiple ends with a shorter group.
const ValueGroup = 32

// DefaultResidual is how many of the most recent tokens KIVI keeps in full
// precision (R = 128 in arXiv:2402.02750).
const DefaultResidual = 128

// stackDim is the widest row the hot paths handle with stack scratch
// space; wider heads allocate.
const stackDim = 256

func scratch(buf []float32, d int) []float32 {
	if d <= len(buf) {
		return buf[:d]
	}
	return make([]float32, d)
}

// qrows is one block's keys or values in a KIVI format.
type qrows struct {
	f        Format // Int2 … Int8
	perToken bool   // values: scale per token and group of channels; keys: per channel
	full     Format // the pool format it widens back to
	n, d     int    // rows and row length
	stride   int    // bytes of codes per row
	codes    []byte
	// scale and zero are float16 bits: [d] per channel, or [n·groups]
	// per token.
	scale, zero []uint16
	// parts, when set, holds the rows in two precisions instead (mixed.go:
	// MiKV, ZipCache); codes, scale and zero are then empty.
	parts *mixedRows
}

func (q *qrows) bytes() int64 {
	if q.parts != nil {
		return q.parts.bytes()
	}
	return int64(len(q.codes)) + 2*int64(len(q.scale)+len(q.zero))
}

func (q *qrows) groups() int { return (q.d + ValueGroup - 1) / ValueGroup }

// quantizeRows quantizes the first n rows (of length d) of src into f,
// per token over channel groups or per channel over the n rows. tmp holds
// at least n·d floats of scratch.
func quantizeRows(src *rows, f Format, n, d int, perToken bool, tmp []float32) *qrows {
	x := tmp[:n*d]
	for i := range n {
		src.get(i, x[i*d:(i+1)*d])
	}
	bits := f.Bits()
	q := &qrows{f: f, perToken: perToken, full: src.format(), n: n, d: d, stride: (d*bits + 7) / 8}
	q.codes = make([]byte, n*q.stride)
	levels := 1<<bits - 1
	if perToken {
		g := q.groups()
		q.scale, q.zero = make([]uint16, n*g), make([]uint16, n*g)
		for i := range n {
			row := x[i*d : (i+1)*d]
			out := q.codes[i*q.stride : (i+1)*q.stride]
			for gi := range g {
				c0, c1 := gi*ValueGroup, min(d, (gi+1)*ValueGroup)
				lo, hi := row[c0], row[c0]
				for _, v := range row[c0:c1] {
					lo, hi = min(lo, v), max(hi, v)
				}
				z, s := groupParams(lo, hi, levels)
				q.zero[i*g+gi], q.scale[i*g+gi] = z, s
				zf, sf := compute.F16ToF32(z), compute.F16ToF32(s)
				for c := c0; c < c1; c++ {
					putCode(out, c, bits, code(row[c], zf, sf, levels))
				}
			}
		}
		return q
	}
	q.scale, q.zero = make([]uint16, d), make([]uint16, d)
	for c := range d {
		lo, hi := x[c], x[c]
		for i := 1; i < n; i++ {
			v := x[i*d+c]
			lo, hi = min(lo, v), max(hi, v)
		}
		z, s := groupParams(lo, hi, levels)
		q.zero[c], q.scale[c] = z, s
		zf, sf := compute.F16ToF32(z), compute.F16ToF32(s)
		for i := range n {
			putCode(q.codes[i*q.stride:(i+1)*q.stride], c, bits, code(x[i*d+c], zf, sf, levels))
		}
	}
	return q
}

// groupParams returns the float16 zero and scale of a group spanning
// [lo, hi]: the zero rounded down, the scale up, so that
// zero + levels·scale ≥ hi.
func groupParams(lo, hi float32, levels int) (zero, scale uint16) {
	const f16Max = 65504
	lo, hi = max(lo, -f16Max), min(hi, f16Max)
	zero = f16Down(lo)
	need := (float64(hi) - float64(compute.F16ToF32(zero))) / float64(levels)
	if need <= 0 {
		return zero, 0
	}
	scale = f16Up(float32(need))
	for float64(compute.F16ToF32(zero))+float64(levels)*float64(compute.F16ToF32(scale)) < float64(hi) && scale < 0x7bff {
		scale++ // float32(need) rounded down
	}
	return zero, scale
}

// code returns the nearest level of x in [0, levels].
func code(x, zero, scale float32, levels int) uint8 {
	if scale == 0 {
		return 0
	}
	c := math.Round((float64(x) - float64(zero)) / float64(scale))
	return uint8(max(0, min(float64(levels), c)))
}

func putCode(row []byte, c, bits int, v uint8) {
	bit := c * bits
	i, sh := bit>>3, uint(bit&7)
	row[i] |= v << sh
	if int(sh)+bits > 8 {
		row[i+1] |= v >> (8 - sh)
	}
}

func getCode(row []byte, c, bits int) uint8 {
	bit := c * bits
	i, sh := bit>>3, uint(bit&7)
	v := uint16(row[i])
	if int(sh)+bits > 8 {
		v |= uint16(row[i+1]) << 8
	}
	return uint8(v>>sh) & (1<<bits - 1)
}

// lut2 and lut4 widen a byte of packed 2- or 4-bit codes.
var lut2, lut4 = func() (a [256][4]float32, b [256][2]float32) {
	for v := range 256 {
		for k := range 4 {
			a[v][k] = float32(v >> (2 * k) & 3)
		}
		b[v][0], b[v][1] = float32(v&15), float32(v>>4)
	}
	return a, b
}()

// unpack widens the codes of one packed row into dst (len(dst) codes).
func unpack(dst []float32, row []byte, bits int) {
	d, c := len(dst), 0
	switch bits {
	case 8:
		for i, v := range row[:d] {
			dst[i] = float32(v)
		}
		return
	case 4:
		for ; c+2 <= d; c += 2 {
			e := &lut4[row[c>>1]]
			dst[c], dst[c+1] = e[0], e[1]
		}
	case 2:
		for ; c+4 <= d; c += 4 {
			e := &lut2[row[c>>2]]
			dst[c], dst[c+1], dst[c+2], dst[c+3] = e[0], e[1], e[2], e[3]
		}
	}
	for ; c < d; c++ {
		dst[c] = float32(getCode(row, c, bits))
	}
}

func (q *qrows) codeRow(i int) []byte { return q.codes[i*q.stride : (i+1)*q.stride] }

// row dequantizes row i into dst (q.d floats).
func (q *qrows) row(i int, dst []float32) {
	if q.parts != nil {
		q.parts.row(i, dst)
		return
	}
	dst = dst[:q.d]
	unpack(dst, q.codeRow(i), q.f.Bits())
	if q.perToken {
		g := q.groups()
		for gi := range g {
			z, s := compute.F16ToF32(q.zero[i*g+gi]), compute.F16ToF32(q.scale[i*g+gi])
			seg := dst[gi*ValueGroup : min(q.d, (gi+1)*ValueGroup)]
			for c, v := range seg {
				seg[c] = z + s*v
			}
		}
		return
	}
	for c, v := range dst {
		dst[c] = compute.F16ToF32(q.zero[c]) + compute.F16ToF32(q.scale[c])*v
	}
}

// dotCodes returns Σ_c w[c]·code_c over the len(w) codes of a packed row.
// Independent partial sums keep the float adds from queueing behind one
// another.
func dotCodes(w []float32, row []byte, bits int) float32 {
	d, c := len(w), 0
	var s0, s1, s2, s3 float32
	switch bits {
	case 8:
		for ; c+4 <= d; c += 4 {
			b, x := row[c:c+4:c+4], w[c:c+4:c+4]
			s0 += x[0] * lut8[b[0]]
			s1 += x[1] * lut8[b[1]]
			s2 += x[2] * lut8[b[2]]
			s3 += x[3] * lut8[b[3]]
		}
	case 3:
		s0, c = dot3(w, row) // quant_codes.go
	case 4:
		for ; c+4 <= d; c += 4 {
			e, f, x := &lut4[row[c>>1]], &lut4[row[c>>1+1]], w[c:c+4:c+4]
			s0 += x[0] * e[0]
			s1 += x[1] * e[1]
			s2 += x[2] * f[0]
			s3 += x[3] * f[1]
		}
	case 2:
		for ; c+4 <= d; c += 4 {
			e, x := &lut2[row[c>>2]], w[c:c+4:c+4]
			s0 += x[0] * e[0]
			s1 += x[1] * e[1]
			s2 += x[2] * e[2]
			s3 += x[3] * e[3]
		}
	}
	for ; c < d; c++ {
		s0 += w[c] * float32(getCode(row, c, bits))
	}
	return (s0 + s1) + (s2 + s3)
}

// axpyCodes adds a·code_c to out[c] for the len(out) codes of a packed row.
func axpyCodes(out []float32, a float32, row []byte, bits int) {
	d, c := len(out), 0
	switch bits {
	case 8:
		for i, v := range row[:d] {
			out[i] += a * lut8[v]
		}
		return
	case 3:
		c = axpy3(out, a, row) // quant_codes.go
	case 4:
		for ; c+2 <= d; c += 2 {
			e := &lut4[row[c>>1]]
			out[c] += a * e[0]
			out[c+1] += a * e[1]
		}
	case 2:
		for ; c+4 <= d; c += 4 {
			e := &lut2[row[c>>2]]
			out[c] += a * e[0]
			out[c+1] += a * e[1]
			out[c+2] += a * e[2]
			out[c+3] += a * e[3]
		}
	}
	for ; c < d; c++ {
		out[c] += a * float32(getCode(row, c, bits))
	}
}

// scores sets dst[j−lo] = scale · qv·row(j) for j in [lo, hi). Per-channel
// rows fold the scales into the query once per call: q·x̂ = Σ q_c·z_c +
// Σ (q_c·s_c)·code_c. The loops are plain Go over the packed codes, with
// scratch space on the stack.
func (q *qrows) scores(dst, qv []float32, lo, hi int, scale float32) {
	if q.parts != nil {
		q.parts.scores(dst, qv, lo, hi, scale)
		return
	}
	d, bits := q.d, q.f.Bits()
	qv = qv[:d]
	if q.perToken {
		g := q.groups()
		for j := lo; j < hi; j++ {
			row := q.codeRow(j)
			var s float32
			for gi := range g {
				c0, c1 := gi*ValueGroup, min(d, (gi+1)*ValueGroup)
				var qsum float32
				for _, v := range qv[c0:c1] {
					qsum += v
				}
				s += compute.F16ToF32(q.scale[j*g+gi])*dotCodes(qv[c0:c1], row[c0*bits/8:], bits) +
					compute.F16ToF32(q.zero[j*g+gi])*qsum
			}
			dst[j-lo] = scale * s
		}
		return
	}
	var qb [stackDim]float32
	var qs []float32
	if d <= stackDim {
		qs = qb[:d]
	} else {
		qs = make([]float32, d)
	}
	var qz float32
	for c := range d {
		qs[c] = qv[c] * compute.F16ToF32(q.scale[c])
		qz += qv[c] * compute.F16ToF32(q.zero[c])
	}
	for j := lo; j < hi; j++ {
		dst[j-lo] = scale * (qz + dotCodes(qs, q.codeRow(j), bits))
	}
}

// mix adds Σ p[j−lo]·row(j) over j in [lo, hi) to out. Per-token rows
// add each group's zero term once at the end; per-channel rows sum the
// weighted codes and apply the scales once.
func (q *qrows) mix(out, p []float32, lo, hi int) {
	if q.parts != nil {
		q.parts.mix(out, p, lo, hi)
		return
	}
	d, bits := q.d, q.f.Bits()
	out = out[:d]
	if q.perToken {
		g := q.groups()
		var bb [stackDim/ValueGroup + 1]float32
		var bias []float32
		if g <= len(bb) {
			bias = bb[:g]
		} else {
			bias = make([]float32, g)
		}
		for j := lo; j < hi; j++ {
			w := p[j-lo]
			if w == 0 {
				continue
			}
			row := q.codeRow(j)
			for gi := range g {
				c0, c1 := gi*ValueGroup, min(d, (gi+1)*ValueGroup)
				axpyCodes(out[c0:c1], w*compute.F16ToF32(q.scale[j*g+gi]), row[c0*bits/8:], bits)
				bias[gi] += w * compute.F16ToF32(q.zero[j*g+gi])
			}
		}
		for gi, b := range bias {
			seg := out[gi*ValueGroup : min(d, (gi+1)*ValueGroup)]
			for c := range seg {
				seg[c] += b
			}
		}
		return
	}
	var ab [stackDim]float32
	var acc []float32
	if d <= stackDim {
		acc = ab[:d]
	} else {
		acc = make([]float32, d)
	}
	var wsum float32
	for j := lo; j < hi; j++ {
		if w := p[j-lo]; w != 0 {
			axpyCodes(acc, w, q.codeRow(j), bits)
			wsum += w
		}
	}
	for c := range d {
		out[c] += compute.F16ToF32(q.scale[c])*acc[c] + compute.F16ToF32(q.zero[c])*wsum
	}
}

// unseal widens quantized rows back to the pool's full-precision format.
func (r *rows) unseal() {
	q := r.q
	nr := newRows(q.full, q.n*q.d)
	var buf [stackDim]float32
	tmp := scratch(buf[:], q.d)
	for i := range q.n {
		if nr.f32 != nil {
			q.row(i, nr.f32[i*q.d:(i+1)*q.d])
		} else {
			q.row(i, tmp)
			compute.F32ToBF16(nr.b16[i*q.d:(i+1)*q.d], tmp)
		}
	}
	*r = nr
}

// bytes returns the bytes b's arrays hold: keys, values and positions.
// A full-precision block holds Pool.BlockBytes.
func (b *block) bytes() int64 {
	return b.k.bytes() + b.v.bytes() + 4*int64(len(b.pos)) + 4*int64(len(b.bias))
}

// Quantize seals, in every layer and KV head, each full block that lies
// wholly before the last residual tokens into format f, in KIVI's layout
// (Liu et al., ICML 2024, arXiv:2402.02750): keys per channel over the
// block's tokens, values per token over groups of ValueGroup channels,
// float16 scales and zeros. The full-precision arrays of a sealed block are
// dropped (a block shared with another sequence is left to it, and this
// sequence takes a fresh quantized block instead), so StoredBytes falls
// for real. residual must be a non-negative multiple of the block size
// (DefaultResidual is KIVI's 128). Blocks already quantized are left as
// they are, so calling Quantize after every decode step re-quantizes only
// the blocks that have aged out of the window.
func (s *Seq) Quantize(f Format, residual int) error { return s.QuantizeKV(f, f, residual) }

// QuantizeKV is Quantize with keys in format fk and values in fv, for
// codes that spend their bits where attention is most sensitive (keys
// steer which tokens are read, values are averaged over them).
func (s *Seq) QuantizeKV(fk, fv Format, residual int) error {
	for _, f := range []Format{fk, fv} {
		if err := s.checkQuant(f, residual); err != nil {
			return err
		}
	}
	tmp := make([]float32, s.pool.cfg.BlockTokens*s.pool.cfg.HeadDim)
	for i := range s.heads {
		s.quantizeHead(&s.heads[i], fk, fv, residual, tmp)
	}
	return nil
}

// QuantizeLayerKV is QuantizeKV for the KV heads of layer l alone, so
// that a layer may be sealed as soon as a layer-by-layer prefill has
// computed it; sealing every layer in turn gives QuantizeKV's cache.
func (s *Seq) QuantizeLayerKV(l int, fk, fv Format, residual int) error {
	for _, f := range []Format{fk, fv} {
		if err := s.checkQuant(f, residual); err != nil {
			return err
		}
	}
	if l < 0 || l >= s.pool.cfg.Layers {
		return fmt.Errorf("kvcache: quantize layer %d: the cache has layers 0 to %d", l, s.pool.cfg.Layers-1)
	}
	tmp := make([]float32, s.pool.cfg.BlockTokens*s.pool.cfg.HeadDim)
	for g := range s.pool.cfg.KVHeads {
		s.quantizeHead(s.list(l, g), fk, fv, residual, tmp)
	}
	return nil
}

// QuantizeHead is Quantize for one layer × KV head, so that heads may keep
// different precisions (mixed-precision methods build on it).
func (s *Seq) QuantizeHead(layer, head int, f Format, residual int) error {
	if err := s.checkQuant(f, residual); err != nil {
		return err
	}
	s.quantizeHead(s.list(layer, head), f, f, residual, make([]float32, s.pool.cfg.BlockTokens*s.pool.cfg.HeadDim))
	return nil
}

func (s *Seq) checkQuant(f Format, residual int) error {
	if !f.Quantized() {
		return fmt.Errorf("kvcache: quantize to %s: not a quantized format (want int2, int3, int4 or int8)", f)
	}
	if bt := s.pool.cfg.BlockTokens; residual < 0 || residual%bt != 0 {
		return fmt.Errorf("kvcache: quantize to %s: residual %d is not a non-negative multiple of the %d-token block", f, residual, bt)
	}
	return nil
}

func (s *Seq) quantizeHead(h *headList, fk, fv Format, residual int, tmp []float32) {
	bt, d := s.pool.cfg.BlockTokens, s.pool.cfg.HeadDim
	for bi := range max(0, h.n-residual) / bt {
		b := h.blocks[bi]
		if b.k.q != nil || b.n != bt {
			continue
		}
		k := rows{q: quantizeRows(&b.k, fk, bt, d, false, tmp)}
		v := rows{q: quantizeRows(&b.v, fv, bt, d, true, tmp)}
		s.replaceSealed(h, bi, k, v) // mixed.go
	}
}

// seal replaces the rows of b, a block in use, by quantized ones; its
// full-precision arrays go to the garbage collector.
func (p *Pool) seal(b *block, k, v rows) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before := b.bytes()
	b.k, b.v = k, v
	p.used += b.bytes() - before
	p.peak = max(p.peak, p.used)
}

// unseal widens a sealed block in use back to full precision.
func (p *Pool) unseal(b *block) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before := b.bytes()
	for _, r := range []*rows{&b.k, &b.v} {
		if r.q != nil {
			r.unseal()
		}
	}
	p.used += b.bytes() - before
	p.peak = max(p.peak, p.used)
}

// StoredBytes returns the bytes the arrays of this sequence's blocks hold
// (a block shared with another sequence counts in both, one a layer reads
// from another layer of this sequence once, with the reader's scales and
// retained tokens; see ShareHead): full-precision
// blocks at Pool.BlockBytes, quantized ones at their codes, float16 scales
// and zeros, and positions. Bytes returns the same.
func (s *Seq) StoredBytes() int64 {
	var n int64
	for i := range s.heads {
		for bi, b := range s.heads[i].blocks {
			if !s.borrowed(i, bi) { // a block read from another layer counts there
				n += b.bytes()
			}
		}
		n += s.heads[i].shared.bytes()
	}
	return n
}

// QuantBlockBytes returns the bytes of one block sealed in format f under
// pool configuration cfg: codes, float16 scales and zeros of keys (per
// channel) and values (per token and ValueGroup channels), and positions.
// KIVI's cost model (arXiv:2402.02750).
func QuantBlockBytes(cfg PoolConfig, f Format) int64 {
	bt, d := cfg.BlockTokens, cfg.HeadDim
	if bt <= 0 {
		bt = DefaultBlockTokens
	}
	codes := int64(bt * ((d*f.Bits() + 7) / 8))
	keyParams := int64(2 * 2 * d)
	valParams := int64(2 * 2 * bt * ((d + ValueGroup - 1) / ValueGroup))
	return 2*codes + keyParams + valParams + int64(4*bt)
}

// f16Round rounds x to the nearest float16, ties to even.
func f16Round(x float32) uint16 {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 { // a float16 subnormal, or zero
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		k, rem, half := m>>shift, m&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || (rem == half && k&1 == 1) {
			k++
		}
		return sign | uint16(k)
	}
	h := sign | uint16(e)<<10 | uint16(mant>>13)
	if rem := mant & 0x1fff; rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++
	}
	return h
}

// f16Down returns the largest float16 ≤ x (x finite, |x| ≤ 65504).
func f16Down(x float32) uint16 {
	h := f16Round(x)
	if compute.F16ToF32(h) > x {
		if h&0x8000 == 0 {
			if h == 0 {
				return 0x8001
			}
			return h - 1
		}
		return h + 1
	}
	return h
}

// f16Up returns the smallest float16 ≥ x (0 < x, capped at 65504).
func f16Up(x float32) uint16 {
	h := f16Round(x)
	if h >= 0x7c00 {
		return 0x7bff
	}
	if compute.F16ToF32(h) < x {
		h = min(h+1, 0x7bff)
	}
	return h
}
