package kvcache

// rowStore is a sealed block's keys or values in the layout of a
// compression method other than KIVI's codes: ThinK's pruned key channels
// (thin.go) or GEAR's codes with low-rank and sparse corrections
// (gear.go). A rows value whose x is set holds nothing else; attention
// reads it through scores and mix, never as raw rows (View.Block reports
// false for it).
//
// Like KIVI's sealed blocks, a block with a rowStore is never written in
// place: Seq.Append into it (after a Truncate) first widens it back to
// the pool's format (Pool.widenStores), and such blocks do not go back to
// the pool's free list.
type rowStore interface {
	// format is what View.Format reports for the block's tokens.
	format() Format
	// bytes is what the store's arrays hold, as StoredBytes counts it.
	bytes() int64
	// get widens row i into dst (HeadDim floats).
	get(i int, dst []float32)
	// scores sets dst[j−lo] = scale · q·row(j) for j in [lo, hi).
	scores(dst, q []float32, lo, hi int, scale float32)
	// mix adds Σ p[j−lo]·row(j) over j in [lo, hi) to out.
	mix(out, p []float32, lo, hi int)
	// shape returns the rows held, their length, and the pool format
	// they widen back to.
	shape() (n, d int, full Format)
}

// widenStore replaces r's store by full-precision rows in the pool's
// format, the same values as the store reads back.
func (r *rows) widenStore() {
	n, d, full := r.x.shape()
	nr := newRows(full, n*d)
	var buf [stackDim]float32
	tmp := scratch(buf[:], d)
	for i := range n {
		r.x.get(i, tmp)
		nr.put(i, tmp)
	}
	*r = nr
}

// widenStores widens a block in use whose keys or values are in a
// rowStore back to full precision, keeping the pool's byte count.
func (p *Pool) widenStores(b *block) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before := b.bytes()
	for _, r := range []*rows{&b.k, &b.v} {
		if r.x != nil {
			r.widenStore()
		}
	}
	p.used += b.bytes() - before
	p.peak = max(p.peak, p.used)
}

// sealedBlock reports whether b holds keys or values in a sealed layout
// (KIVI codes or a rowStore), which a compression stage must not seal
// again.
func sealedBlock(b *block) bool {
	return b.k.q != nil || b.v.q != nil || b.k.x != nil || b.v.x != nil
}

// sealStores replaces block bi of h, a full block, by one whose keys are
// k and whose values are v, or the block's own values when v is nil: in
// place when the sequence owns the block, otherwise in a fresh block (the
// shared one is left to its other holders), as Quantize does.
func (s *Seq) sealStores(h *headList, bi int, k rows, v *rows) {
	b := h.blocks[bi]
	if !s.pool.shared(b) {
		if v == nil {
			v = &b.v
		}
		s.pool.seal(b, k, *v)
		return
	}
	fresh, _ := s.pool.alloc(1, true)
	nb := fresh[0]
	if v == nil { // copy the values: the shared block's arrays stay its own
		for j := range b.n {
			nb.v.copyRow(j, &b.v, j, s.pool.cfg.HeadDim)
		}
		v = &nb.v
	}
	s.pool.seal(nb, k, *v)
	copy(nb.pos, b.pos)
	nb.n = b.n
	h.blocks[bi] = nb
	s.pool.release([]*block{b})
}
