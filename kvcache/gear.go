package kvcache

import (
	"fmt"
	"math"
	"sort"

	"github.com/kvserve/kvserve/compute"
)

// GEAR's storage (Kang et al., "GEAR: An Efficient KV Cache Compression
// Recipe for Near-Lossless Generative Inference of LLM", arXiv:2403.05527):
// X ≈ D̂ + L + S, where D̂ is a KIVI-style quantization of X with its
// outliers taken out, L = A·Bᵀ a low-rank approximation of what the
// quantization missed, and S a sparse matrix of corrections at the outlier
// entries.
//
// Layout. Seq.GEARQuantize seals, in each layer × KV head, the full
// blocks that have aged out of the full-precision window into one
// segment. Every block keeps its own codes (kvcache's KIVI layout: keys
// per channel over the block's tokens, values per token over groups of
// ValueGroup channels, float16 scales and zeros), its rows of the left
// factor A (tokens × rank, float16) and its sparse corrections (a uint16
// flat index row·HeadDim + channel and a float16 value each). The right
// factor B (HeadDim × rank, float16) is the segment's, shared by its
// blocks and counted in the bytes of the segment's first block, which the
// cache frees last (Truncate drops later blocks first; Keep and Release
// drop them all).
//
// Reading. scores computes q·D̂ from the codes as KIVI does, adds
// A_j·(Bᵀq) with Bᵀq formed once per block, and adds the sparse entries
// of the block's rows; mix does the transpose. Nothing is widened.

// GEARConfig is how Seq.GEARQuantize compresses.
type GEARConfig struct {
	// Format is the base quantizer's codes: Int2, Int3, Int4 or Int8.
	Format Format
	// Residual is how many of the newest tokens stay in full precision
	// (GEAR's streaming buffer): a non-negative multiple of the block.
	Residual int
	// Rank is the rank of the error's low-rank part for a head's first
	// segment (the prompt); DecodeRank for the segments sealed after it
	// (0: Rank).
	Rank, DecodeRank int
	// Sparsity is the fraction of a block's entries kept as sparse
	// corrections, in [0, 0.5].
	Sparsity float64
	// Iters is the number of power (subspace) iterations, at least 1.
	Iters int
}

func (c GEARConfig) check(bt, d int) error {
	switch {
	case !c.Format.Quantized():
		return fmt.Errorf("kvcache: gear: base format %s is not a quantized format (want int2, int3, int4 or int8)", c.Format)
	case c.Residual < 0 || c.Residual%bt != 0:
		return fmt.Errorf("kvcache: gear: residual %d is not a non-negative multiple of the %d-token block", c.Residual, bt)
	case c.Rank < 0 || c.DecodeRank < 0:
		return fmt.Errorf("kvcache: gear: negative rank %d or decode rank %d", c.Rank, c.DecodeRank)
	case c.Sparsity < 0 || c.Sparsity > 0.5 || math.IsNaN(c.Sparsity):
		return fmt.Errorf("kvcache: gear: sparsity %v outside [0, 0.5]", c.Sparsity)
	case c.Iters < 1:
		return fmt.Errorf("kvcache: gear: %d power iterations, want at least 1", c.Iters)
	case bt*d > math.MaxUint16+1:
		return fmt.Errorf("kvcache: gear: a block of %d × %d entries is too large for 16-bit sparse indices", bt, d)
	}
	return nil
}

// gearFactor is a segment's right factor B, HeadDim × r float16,
// row-major: channel c's r values at c·r.
type gearFactor struct {
	b []uint16
	r int
}

// gearRows is one block's keys or values in GEAR's layout.
type gearRows struct {
	q     *qrows
	a     []uint16 // n × r float16: the block's rows of A
	f     *gearFactor
	owner bool     // this block counts f's bytes
	idx   []uint16 // sparse corrections: row·d + channel, ascending
	val   []uint16 // their float16 values
}

func (g *gearRows) format() Format { return g.q.f }

func (g *gearRows) shape() (int, int, Format) { return g.q.n, g.q.d, g.q.full }

func (g *gearRows) bytes() int64 {
	n := g.q.bytes() + 2*int64(len(g.a)+len(g.idx)+len(g.val))
	if g.owner {
		n += 2 * int64(len(g.f.b))
	}
	return n
}

// sparse returns the range of g.idx that falls in rows [lo, hi).
func (g *gearRows) sparse(lo, hi int) (from, to int) {
	d := g.q.d
	from = sort.Search(len(g.idx), func(i int) bool { return int(g.idx[i]) >= lo*d })
	to = from + sort.Search(len(g.idx)-from, func(i int) bool { return int(g.idx[from+i]) >= hi*d })
	return from, to
}

func (g *gearRows) get(i int, dst []float32) {
	d, r := g.q.d, g.f.r
	dst = dst[:d]
	g.q.row(i, dst)
	a := g.a[i*r : (i+1)*r]
	for c := range d {
		bc := g.f.b[c*r : (c+1)*r]
		var s float32
		for k, v := range a {
			s += compute.F16ToF32(v) * compute.F16ToF32(bc[k])
		}
		dst[c] += s
	}
	from, to := g.sparse(i, i+1)
	for x := from; x < to; x++ {
		dst[int(g.idx[x])-i*d] += compute.F16ToF32(g.val[x])
	}
}

// maxStackRank is the widest rank the read paths keep on the stack.
const maxStackRank = 16

func (g *gearRows) scores(dst, qv []float32, lo, hi int, scale float32) {
	d, r := g.q.d, g.f.r
	g.q.scores(dst, qv, lo, hi, scale)
	var qbBuf [maxStackRank]float32
	qb := scratch(qbBuf[:], r)
	clear(qb)
	for c := range d { // Bᵀq
		if qc := qv[c]; qc != 0 {
			for k, v := range g.f.b[c*r : (c+1)*r] {
				qb[k] += qc * compute.F16ToF32(v)
			}
		}
	}
	for j := lo; j < hi; j++ {
		var s float32
		for k, v := range g.a[j*r : (j+1)*r] {
			s += compute.F16ToF32(v) * qb[k]
		}
		dst[j-lo] += scale * s
	}
	from, to := g.sparse(lo, hi)
	for x := from; x < to; x++ {
		e := int(g.idx[x])
		dst[e/d-lo] += scale * qv[e%d] * compute.F16ToF32(g.val[x])
	}
}

func (g *gearRows) mix(out, p []float32, lo, hi int) {
	d, r := g.q.d, g.f.r
	g.q.mix(out, p, lo, hi)
	var wBuf [maxStackRank]float32
	w := scratch(wBuf[:], r)
	clear(w)
	for j := lo; j < hi; j++ { // Σ p_j A_j
		if pj := p[j-lo]; pj != 0 {
			for k, v := range g.a[j*r : (j+1)*r] {
				w[k] += pj * compute.F16ToF32(v)
			}
		}
	}
	for c := range d {
		var s float32
		for k, v := range g.f.b[c*r : (c+1)*r] {
			s += compute.F16ToF32(v) * w[k]
		}
		out[c] += s
	}
	from, to := g.sparse(lo, hi)
	for x := from; x < to; x++ {
		e := int(g.idx[x])
		out[e%d] += p[e/d-lo] * compute.F16ToF32(g.val[x])
	}
}

// GEARQuantize seals, in every layer and KV head, the full blocks that lie
// wholly before the last cfg.Residual tokens and are not sealed yet into
// GEAR's layout (see GEARConfig), one segment per head and call: a head's
// first segment gets cfg.Rank, later ones cfg.DecodeRank. Sealed blocks
// drop their full-precision arrays (a shared block is left to its other
// holders and replaced by a fresh one), so StoredBytes falls for real.
func (s *Seq) GEARQuantize(cfg GEARConfig) error {
	bt, d := s.pool.cfg.BlockTokens, s.pool.cfg.HeadDim
	if err := cfg.check(bt, d); err != nil {
		return err
	}
	for i := range s.heads {
		s.gearHead(&s.heads[i], cfg)
	}
	return nil
}

// GEARQuantizeLayer is GEARQuantize for the KV heads of layer l alone,
// so that a layer may be sealed as soon as a layer-by-layer prefill has
// computed it; sealing every layer in turn gives GEARQuantize's cache.
func (s *Seq) GEARQuantizeLayer(l int, cfg GEARConfig) error {
	if err := cfg.check(s.pool.cfg.BlockTokens, s.pool.cfg.HeadDim); err != nil {
		return err
	}
	if l < 0 || l >= s.pool.cfg.Layers {
		return fmt.Errorf("kvcache: GEAR-quantize layer %d: the cache has layers 0 to %d", l, s.pool.cfg.Layers-1)
	}
	for g := range s.pool.cfg.KVHeads {
		s.gearHead(s.list(l, g), cfg)
	}
	return nil
}

func (s *Seq) gearHead(h *headList, cfg GEARConfig) {
	bt := s.pool.cfg.BlockTokens
	var seg []int
	rank := cfg.Rank
	for bi := range max(0, h.n-cfg.Residual) / bt {
		b := h.blocks[bi]
		if _, ok := b.k.x.(*gearRows); ok && cfg.DecodeRank > 0 {
			rank = cfg.DecodeRank
		}
		if sealedBlock(b) || b.n != bt {
			continue
		}
		seg = append(seg, bi)
	}
	if len(seg) == 0 {
		return
	}
	ks := s.gearSegment(h, seg, false, cfg, rank)
	vs := s.gearSegment(h, seg, true, cfg, rank)
	for i, bi := range seg {
		s.sealStores(h, bi, rows{x: ks[i]}, &rows{x: vs[i]})
	}
}

// gearSegment compresses the keys (perToken false) or values of the
// blocks seg of h: outliers out, quantize, low-rank error, sparse
// corrections.
func (s *Seq) gearSegment(h *headList, seg []int, perToken bool, cfg GEARConfig, rank int) []*gearRows {
	bt, d := s.pool.cfg.BlockTokens, s.pool.cfg.HeadDim
	per := bt * d
	n := len(seg) * bt
	x := make([]float32, n*d)   // the exact rows
	deq := make([]float32, n*d) // the outlier-free rows, then their codes read back
	res := make([]float32, n*d) // what the codes missed, zero at outliers
	for si, bi := range seg {
		b := h.blocks[bi]
		r := &b.k
		if perToken {
			r = &b.v
		}
		for i := range bt {
			r.get(i, x[(si*bt+i)*d:(si*bt+i+1)*d])
		}
	}
	count := int(math.Round(cfg.Sparsity * float64(per)))
	out := make([]*gearRows, len(seg))
	tmp := make([]float32, per)
	for si := range seg {
		blk, dq := x[si*per:(si+1)*per], deq[si*per:(si+1)*per]
		copy(dq, blk)
		idx := gearOutliers(dq, bt, d, perToken, count) // also sets them to their group's median
		q := quantizeRows(&rows{f32: dq}, cfg.Format, bt, d, perToken, tmp)
		q.full = s.pool.cfg.Format
		rs := res[si*per : (si+1)*per]
		for i := range bt {
			q.row(i, tmp[i*d:(i+1)*d])
		}
		for e := range rs {
			rs[e] = dq[e] - tmp[e]
		}
		copy(dq, tmp[:per])
		for _, e := range idx {
			rs[e] = 0
		}
		out[si] = &gearRows{q: q, idx: idx}
	}
	a, b, r := lowRank(res, n, d, rank, cfg.Iters)
	f := &gearFactor{b: make([]uint16, d*r), r: r}
	for e, v := range b {
		f.b[e] = f16Round(v)
	}
	bf := make([]float32, len(f.b))
	for e, v := range f.b {
		bf[e] = compute.F16ToF32(v)
	}
	for si, g := range out {
		g.f, g.owner = f, si == 0
		g.a = make([]uint16, bt*r)
		for e := range g.a {
			g.a[e] = f16Round(a[si*bt*r+e])
		}
		g.val = make([]uint16, len(g.idx))
		for j, e := range g.idx {
			i, c := int(e)/d, int(e)%d
			approx := deq[si*per+int(e)]
			for k := range r {
				approx += compute.F16ToF32(g.a[i*r+k]) * bf[c*r+k]
			}
			g.val[j] = f16Round(x[si*per+int(e)] - approx)
		}
	}
	return out
}

// gearOutliers picks the count entries of one block (bt × d, row-major)
// that lie farthest from their quantization group's median, in units of
// the group's median absolute deviation (a scale that the outliers
// themselves do not inflate) — groups are KIVI's: a channel over the
// block's tokens for keys, a token's ValueGroup channels for values — and
// sets each to its group's median, so that it no longer stretches the
// group's range. It returns their flat indices, ascending.
func gearOutliers(x []float32, bt, d int, perToken bool, count int) []uint16 {
	if count <= 0 {
		return nil
	}
	members := gearGroups(bt, d, perToken)
	med := make([]float32, len(x))
	z := make([]float64, len(x))
	var buf []float64
	for _, g := range members {
		buf = buf[:0]
		for _, e := range g {
			buf = append(buf, float64(x[e]))
		}
		m := median(buf)
		for i, e := range g {
			buf[i] = math.Abs(float64(x[e]) - m)
		}
		scale := median(buf)
		if scale == 0 { // more than half the group equal: mean deviation
			for _, v := range buf {
				scale += v / float64(len(buf))
			}
		}
		for _, e := range g {
			med[e] = float32(m)
			if scale > 0 {
				z[e] = math.Abs(float64(x[e])-m) / scale
			}
		}
	}
	order := make([]int, len(x))
	for e := range order {
		order[e] = e
	}
	sort.SliceStable(order, func(i, j int) bool { return z[order[i]] > z[order[j]] })
	order = order[:min(count, len(order))]
	sort.Ints(order)
	idx := make([]uint16, len(order))
	for i, e := range order {
		x[e] = med[e]
		idx[i] = uint16(e)
	}
	return idx
}

// gearGroups lists the flat indices of each quantization group of a
// bt × d block: one per channel for keys, one per token and ValueGroup
// channels for values.
func gearGroups(bt, d int, perToken bool) [][]int {
	var out [][]int
	if !perToken {
		for c := range d {
			g := make([]int, bt)
			for i := range bt {
				g[i] = i*d + c
			}
			out = append(out, g)
		}
		return out
	}
	for i := range bt {
		for c0 := 0; c0 < d; c0 += ValueGroup {
			var g []int
			for c := c0; c < min(d, c0+ValueGroup); c++ {
				g = append(g, i*d+c)
			}
			out = append(out, g)
		}
	}
	return out
}

// median returns the median of x (reordering it).
func median(x []float64) float64 {
	sort.Float64s(x)
	n := len(x)
	if n%2 == 1 {
		return x[n/2]
	}
	return (x[n/2-1] + x[n/2]) / 2
}

// lowRank returns A (n × r, orthonormal columns) and B (d × r) with
// A·Bᵀ ≈ m (n × d, row-major), by subspace (power) iteration from a fixed
// pseudo-random start: iters rounds of A ← orth(m·B), B ← mᵀ·A. r is
// min(rank, n, d).
func lowRank(m []float32, n, d, rank, iters int) (a, b []float32, r int) {
	r = min(rank, n, d)
	a, b = make([]float32, n*r), make([]float32, d*r)
	if r == 0 {
		return a, b, 0
	}
	seed := uint32(0x9e3779b9)
	for e := range b {
		seed ^= seed << 13
		seed ^= seed >> 17
		seed ^= seed << 5
		b[e] = float32(seed)/float32(math.MaxUint32)*2 - 1
	}
	for range iters {
		for i := range n { // A = m·B
			row := m[i*d : (i+1)*d]
			for k := range r {
				var s float64
				for c, v := range row {
					s += float64(v) * float64(b[c*r+k])
				}
				a[i*r+k] = float32(s)
			}
		}
		orthonormalize(a, n, r)
		clear(b) // B = mᵀ·A
		for i := range n {
			row, ai := m[i*d:(i+1)*d], a[i*r:(i+1)*r]
			for c, v := range row {
				for k, w := range ai {
					b[c*r+k] += v * w
				}
			}
		}
	}
	return a, b, r
}

// orthonormalize makes the r columns of a (n × r, row-major) orthonormal
// by modified Gram–Schmidt, projecting twice; a column with less than
// 1e-5 of its norm left outside the earlier ones is set to zero, so that
// a rank above the matrix's adds nothing instead of rounding noise.
func orthonormalize(a []float32, n, r int) {
	norm := func(k int) float64 {
		var s float64
		for i := range n {
			s += float64(a[i*r+k]) * float64(a[i*r+k])
		}
		return math.Sqrt(s)
	}
	for k := range r {
		before := norm(k)
		for range 2 {
			for p := range k {
				var dot float64
				for i := range n {
					dot += float64(a[i*r+k]) * float64(a[i*r+p])
				}
				for i := range n {
					a[i*r+k] -= float32(dot) * a[i*r+p]
				}
			}
		}
		inv := float32(0)
		if after := norm(k); after > 1e-5*before && after > 0 {
			inv = float32(1 / after)
		}
		for i := range n {
			a[i*r+k] *= inv
		}
	}
}
