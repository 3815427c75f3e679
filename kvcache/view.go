package kvcache

import "sort"

// View reads one layer × KV head of a sequence: tokens in position order,
// their original positions, keys and values. Attention runs over a View, so
// evicted tokens cost neither memory nor time.
type View struct {
	h  *headList
	bt int
	d  int
}

// View returns a read-only view of one head. It is valid until the
// sequence next changes.
func (s *Seq) View(layer, head int) View {
	return View{h: s.list(layer, head), bt: s.pool.cfg.BlockTokens, d: s.pool.cfg.HeadDim}
}

// Len returns the number of tokens.
func (v View) Len() int { return v.h.n }

// Pos returns the original position of token j.
func (v View) Pos(j int) int { return int(v.h.blocks[j/v.bt].pos[j%v.bt]) }

// Key widens token j's key into dst.
func (v View) Key(j int, dst []float32) {
	if v.sharedKey(j, dst) {
		return
	}
	v.h.blocks[j/v.bt].k.get(j%v.bt, dst[:v.d])
}

// Value widens token j's value into dst.
func (v View) Value(j int, dst []float32) {
	if v.sharedValue(j, dst) {
		return
	}
	v.h.blocks[j/v.bt].v.get(j%v.bt, dst[:v.d])
}

// Span returns the token range [lo, hi) whose positions p satisfy
// from ≤ p ≤ to.
func (v View) Span(from, to int) (lo, hi int) {
	lo = sort.Search(v.h.n, func(j int) bool { return v.Pos(j) >= from })
	hi = sort.Search(v.h.n, func(j int) bool { return v.Pos(j) > to })
	return lo, max(lo, hi)
}

// Scores sets dst[j−lo] = scale · q·key(j) for tokens j in [lo, hi).
func (v View) Scores(dst, q []float32, lo, hi int, scale float32) {
	if v.h.shared != nil {
		v.sharedScores(dst, q, lo, hi, scale)
		return
	}
	for lo < hi {
		bi, off := lo/v.bt, lo%v.bt
		end := min(hi-lo, v.bt-off)
		b := v.h.blocks[bi]
		b.k.scores(dst[:end], q, off, off+end, scale)
		if b.bias != nil {
			for j, w := range b.bias[off : off+end] {
				dst[j] += w
			}
		}
		dst, lo = dst[end:], lo+end
	}
}

// Mix adds Σ p[j−lo]·value(j) over tokens j in [lo, hi) to out.
func (v View) Mix(out, p []float32, lo, hi int) {
	if v.h.shared != nil {
		v.sharedMix(out, p, lo, hi)
		return
	}
	for lo < hi {
		bi, off := lo/v.bt, lo%v.bt
		end := min(hi-lo, v.bt-off)
		v.h.blocks[bi].v.mix(out, p[:end], off, off+end)
		p, lo = p[end:], lo+end
	}
}

// Format returns how token j's key and value are stored: the pool's
// format, or a KIVI format (arXiv:2402.02750) once Seq.Quantize has sealed
// its block, or the token's own format in a mixed-precision block
// (Seq.QuantizeMixed).
func (v View) Format(j int) Format { return v.h.blocks[j/v.bt].k.formatAt(j % v.bt) }
