package kvcache

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvserve/kvserve/compute"
)

var quantFormats = []Format{Int2, Int3, Int4, Int8}

func TestF16Rounding(t *testing.T) {
	for h := range 0x10000 {
		u := uint16(h)
		if u&0x7c00 == 0x7c00 { // inf, nan
			continue
		}
		x := compute.F16ToF32(u)
		if got := f16Round(x); got != u && !(x == 0 && got&0x7fff == 0) {
			t.Fatalf("f16Round(%g) = %#x, want %#x", x, got, u)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		x := float32(r.NormFloat64() * math.Pow(10, r.Float64()*8-5))
		down, up := compute.F16ToF32(f16Down(x)), compute.F16ToF32(f16Up(float32(math.Abs(float64(x)))))
		if down > x || math.Abs(float64(x-down)) > math.Max(math.Abs(float64(x))/1024, 6e-8) {
			t.Fatalf("f16Down(%g) = %g", x, down)
		}
		if ax := float32(math.Abs(float64(x))); up < ax || float64(up-ax) > math.Max(float64(ax)/1024, 6e-8) {
			t.Fatalf("f16Up(%g) = %g", ax, up)
		}
	}
}

// kvRows returns n rows of length d shaped like real keys: a few outlier
// channels with large magnitude and an offset, the rest small.
func kvRows(r *rand.Rand, n, d int) []float32 {
	x := make([]float32, n*d)
	for c := range d {
		mag, off := 1.0, 0.0
		if c%13 == 5 {
			mag, off = 8, 20
		}
		for i := range n {
			x[i*d+c] = float32(off + mag*r.NormFloat64())
		}
	}
	return x
}

func fullRows(f Format, x []float32, n, d int) rows {
	r := newRows(f, n*d)
	for i := range n {
		r.put(i, x[i*d:(i+1)*d])
	}
	return r
}

// TestQuantRoundTrip checks |x − x̂| ≤ scale/2 for every element, keys per
// channel and values per token, every format, from f32 and bf16, with
// head dims that do and do not fill the last byte or value group.
func TestQuantRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, f := range quantFormats {
		for _, src := range []Format{F32, BF16} {
			for _, d := range []int{64, 40, 7} {
				const n = 32
				x := kvRows(r, n, d)
				full := fullRows(src, x, n, d)
				want := make([]float32, n*d) // x as the source format holds it
				for i := range n {
					full.get(i, want[i*d:(i+1)*d])
				}
				for _, perToken := range []bool{false, true} {
					q := quantizeRows(&full, f, n, d, perToken, make([]float32, n*d))
					if got := q.bytes(); got != int64(n*((d*f.Bits()+7)/8)+2*2*len(q.scale)) {
						t.Fatalf("%s: %d bytes", f, got)
					}
					row := make([]float32, d)
					for i := range n {
						q.row(i, row)
						for c := range d {
							si := c
							if perToken {
								si = i*q.groups() + c/ValueGroup
							}
							s := compute.F16ToF32(q.scale[si])
							if err := math.Abs(float64(row[c] - want[i*d+c])); err > float64(s)/2*(1+1e-5)+1e-6 {
								t.Fatalf("%s from %s d=%d perToken=%v: row %d ch %d: |%g − %g| = %g > scale/2 = %g", f, src, d, perToken, i, c, want[i*d+c], row[c], err, s/2)
							}
						}
					}
				}
			}
		}
	}
}

// TestQuantScoresMix compares the fused scores and mix of quantized rows
// with plain dot products and sums over their dequantized rows.
func TestQuantScoresMix(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, f := range quantFormats {
		for _, d := range []int{64, 40} {
			const n = 32
			full := fullRows(F32, kvRows(r, n, d), n, d)
			for _, perToken := range []bool{false, true} {
				rw := rows{q: quantizeRows(&full, f, n, d, perToken, make([]float32, n*d))}
				deq := make([]float32, n*d)
				for i := range n {
					rw.get(i, deq[i*d:(i+1)*d])
				}
				q := make([]float32, d)
				p := make([]float32, n)
				for i := range q {
					q[i] = float32(r.NormFloat64())
				}
				for i := range p {
					p[i] = float32(r.Float64())
				}
				p[3] = 0
				lo, hi := 5, 29
				got := make([]float32, hi-lo)
				rw.scores(got, q, lo, hi, 0.125)
				for j := lo; j < hi; j++ {
					want := 0.125 * compute.Dot(q, deq[j*d:(j+1)*d])
					if math.Abs(float64(got[j-lo]-want)) > 1e-3*(1+math.Abs(float64(want))) {
						t.Fatalf("%s d=%d perToken=%v: score %d = %g, want %g", f, d, perToken, j, got[j-lo], want)
					}
				}
				out := make([]float32, d)
				out[1] = 1 // mix adds
				want := make([]float32, d)
				want[1] = 1
				rw.mix(out, p[lo:hi], lo, hi)
				for j := lo; j < hi; j++ {
					compute.Axpy(want, p[j], deq[j*d:(j+1)*d])
				}
				for c := range d {
					if math.Abs(float64(out[c]-want[c])) > 1e-3*(1+math.Abs(float64(want[c]))) {
						t.Fatalf("%s d=%d perToken=%v: mix[%d] = %g, want %g", f, d, perToken, c, out[c], want[c])
					}
				}
			}
		}
	}
}

// randFill appends n tokens of random keys and values to every head and
// returns them, [layer·KVHeads+head][token·dim].
func randFill(s *Seq, r *rand.Rand, n int) (keys, vals [][]float32) {
	d := s.HeadDim()
	heads := s.Layers() * s.KVHeads()
	keys, vals = make([][]float32, heads), make([][]float32, heads)
	for i := range heads {
		keys[i], vals[i] = kvRows(r, n, d), kvRows(r, n, d)
	}
	for p := range n {
		for l := range s.Layers() {
			for h := range s.KVHeads() {
				i := l*s.KVHeads() + h
				s.Append(l, h, keys[i][p*d:(p+1)*d], vals[i][p*d:(p+1)*d], s.Next()+p)
			}
		}
	}
	s.Advance(n)
	return keys, vals
}

// snapshot widens every token of every head of s.
func snapshot(s *Seq) (keys, vals [][]float32) {
	d := s.HeadDim()
	for l := range s.Layers() {
		for h := range s.KVHeads() {
			v := s.View(l, h)
			k, x := make([]float32, v.Len()*d), make([]float32, v.Len()*d)
			for j := range v.Len() {
				v.Key(j, k[j*d:(j+1)*d])
				v.Value(j, x[j*d:(j+1)*d])
			}
			keys, vals = append(keys, k), append(vals, x)
		}
	}
	return keys, vals
}

func maxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

func TestQuantizeSeq(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	p := NewPool(PoolConfig{Layers: 2, KVHeads: 2, HeadDim: 16, BlockTokens: 4, Format: BF16})
	s := p.NewSeq()
	defer s.Release()
	keys, vals := randFill(s, r, 27) // 6 full blocks + 3 tokens
	k0, v0 := snapshot(s)
	full := s.StoredBytes()
	if full != s.Bytes() || full != 4*7*p.BlockBytes() {
		t.Fatalf("stored %d, Bytes %d, want %d", full, s.Bytes(), 4*7*p.BlockBytes())
	}
	if err := s.Quantize(Int4, 6); err == nil {
		t.Error("a residual that is not a multiple of the block was accepted")
	}
	if err := s.Quantize(BF16, 8); err == nil {
		t.Error("quantizing to bf16 was accepted")
	}
	if err := s.Quantize(Int4, 8); err != nil {
		t.Fatal(err)
	}
	// 27 tokens, residual 8: blocks wholly before token 19 (0…3) are sealed;
	// tokens 16…26 (11 ≥ 8) stay in bf16.
	for l := range 2 {
		for h := range 2 {
			v := s.View(l, h)
			for j := range v.Len() {
				want := BF16
				if j < 16 {
					want = Int4
				}
				if v.Format(j) != want || v.Pos(j) != j {
					t.Fatalf("head %d/%d token %d: %s at %d, want %s at %d", l, h, j, v.Format(j), v.Pos(j), want, j)
				}
			}
		}
	}
	wantBytes := 4 * (4*QuantBlockBytes(p.Config(), Int4) + 3*p.BlockBytes())
	if got := s.StoredBytes(); got != wantBytes {
		t.Fatalf("stored %d bytes after Int4, want %d", got, wantBytes)
	}
	k1, v1 := snapshot(s)
	for i := range k1 {
		if maxDiff(k1[i][16*16:], k0[i][16*16:]) != 0 || maxDiff(v1[i][16*16:], v0[i][16*16:]) != 0 {
			t.Fatalf("head %d: the residual window changed", i)
		}
		// 4 bits over ~±(20+3·8): an error of a few tenths at most.
		if e := maxDiff(k1[i], keys[i]); e == 0 || e > 2 {
			t.Fatalf("head %d: key error %g", i, e)
		}
		if e := maxDiff(v1[i], vals[i]); e == 0 || e > 2 {
			t.Fatalf("head %d: value error %g", i, e)
		}
	}
	// Appending ages blocks out of the window; Quantize again seals them
	// and leaves the sealed ones alone.
	randFill(s, r, 5) // 32 tokens
	if err := s.Quantize(Int4, 8); err != nil {
		t.Fatal(err)
	}
	v := s.View(1, 1)
	if v.Format(23) != Int4 || v.Format(24) != BF16 || v.Len() != 32 {
		t.Fatalf("after 5 more tokens: token 23 %s, 24 %s, %d tokens", v.Format(23), v.Format(24), v.Len())
	}
	k2, _ := snapshot(s)
	if maxDiff(k2[3][:16*16], k1[3][:16*16]) != 0 {
		t.Fatal("re-quantizing touched sealed blocks")
	}
	// Attention over a mixed head equals attention over its widened rows.
	q := make([]float32, 16)
	for i := range q {
		q[i] = float32(r.NormFloat64())
	}
	sc := make([]float32, 30)
	v.Scores(sc, q, 1, 31, 0.25)
	for j := 1; j < 31; j++ {
		if want := 0.25 * compute.Dot(q, k2[3][j*16:(j+1)*16]); math.Abs(float64(sc[j-1]-want)) > 1e-3*(1+math.Abs(float64(want))) {
			t.Fatalf("score %d = %g, want %g", j, sc[j-1], want)
		}
	}
	// Truncating into a sealed block and appending widens it back.
	if err := s.Truncate(6); err != nil {
		t.Fatal(err)
	}
	randFill(s, r, 1)
	v = s.View(0, 0)
	if v.Len() != 7 || v.Format(4) != BF16 || v.Format(0) != Int4 {
		t.Fatalf("after truncate: %d tokens, formats %s %s", v.Len(), v.Format(0), v.Format(4))
	}
	k3, _ := snapshot(s)
	if e := maxDiff(k3[0][4*16:6*16], k2[0][4*16:6*16]); e > 0.2 { // one bf16 rounding of dequantized values
		t.Fatalf("widened tokens moved by %g", e)
	}
}

// TestQuantBytesPerToken measures the stored bytes per token of a long
// sequence sealed whole (residual 0) in tinychat's shape: bf16, head_dim
// 64, blocks of 32; ratios to bf16 with and without the 4-byte positions.
func TestQuantBytesPerToken(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	cfg := PoolConfig{Layers: 1, KVHeads: 1, HeadDim: 64, Format: BF16}
	p := NewPool(cfg)
	base := p.NewSeq()
	defer base.Release()
	randFill(base, r, 1024)
	bf16 := float64(base.StoredBytes()) / 1024
	if bf16 != 2*64*2+4 {
		t.Fatalf("bf16: %g bytes per token", bf16)
	}
	// KIVI's cost with fp16 scale and zero per group of 32 (METHODS.md):
	// 0.625, 0.5, 0.375 bytes per value for 4, 3, 2 bits.
	want := map[Format]float64{Int2: 0.1875, Int3: 0.25, Int4: 0.3125, Int8: 0.5625}
	for _, f := range quantFormats {
		s, err := base.Fork(base.Next())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Quantize(f, 0); err != nil {
			t.Fatal(err)
		}
		per := float64(s.StoredBytes()) / 1024
		kv := per - 4
		t.Logf("%s: %.1f bytes per token per head (%.1f without positions): %.4f of bf16 (%.4f with positions)", f, per, kv, kv/256, per/bf16)
		if math.Abs(kv/256-want[f]) > 1e-9 {
			t.Errorf("%s: %.4f of bf16, want %.4f", f, kv/256, want[f])
		}
		if per != float64(QuantBlockBytes(p.Config(), f))/32 {
			t.Errorf("%s: measured %g, QuantBlockBytes says %g", f, per, float64(QuantBlockBytes(p.Config(), f))/32)
		}
		s.Release()
	}
}

// TestQuantizeForkCOW quantizes a fork: the parent's blocks stay exact,
// the pool's block count stays balanced, and a fork of a quantized cache
// that writes into a shared sealed block copies it.
func TestQuantizeForkCOW(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	p := NewPool(PoolConfig{Layers: 1, KVHeads: 2, HeadDim: 8, BlockTokens: 4})
	base := p.NewSeq()
	randFill(base, r, 18)
	k0, v0 := snapshot(base)
	f, err := base.Fork(18)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Quantize(Int2, 4); err != nil {
		t.Fatal(err)
	}
	kb, vb := snapshot(base)
	for i := range k0 {
		if maxDiff(kb[i], k0[i]) != 0 || maxDiff(vb[i], v0[i]) != 0 {
			t.Fatal("quantizing a fork changed its parent")
		}
	}
	// base: 5 blocks per head; the fork: its own copy of the partial last
	// block (Fork copies it) and its own 3 sealed blocks.
	if used, _ := p.Stats(); used != 2*5+2*(1+3) {
		t.Fatalf("%d blocks in use, want 18", used)
	}
	if f.StoredBytes() >= base.StoredBytes() {
		t.Fatalf("fork %d bytes, parent %d", f.StoredBytes(), base.StoredBytes())
	}
	kf, _ := snapshot(f)
	// A fork of the quantized fork at 10 tokens shares a sealed block cut
	// at 2 tokens; appending copies it, widened, and leaves the other alone.
	g, err := f.Fork(10)
	if err != nil {
		t.Fatal(err)
	}
	randFill(g, r, 3)
	kg, _ := snapshot(g)
	kf2, _ := snapshot(f)
	for i := range kf {
		if maxDiff(kf2[i], kf[i]) != 0 {
			t.Fatal("writing into a fork changed the shared quantized block")
		}
		if maxDiff(kg[i][:10*8], kf[i][:10*8]) != 0 { // f32 pool: widening is exact
			t.Fatal("the copied block lost its dequantized values")
		}
	}
	if v := g.View(0, 1); v.Format(8) != F32 || v.Format(0) != Int2 || v.Len() != 13 {
		t.Fatalf("fork of fork: %s %s, %d tokens", v.Format(0), v.Format(8), v.Len())
	}
	g.Release()
	f.Release()
	base.Release()
	if used, _ := p.Stats(); used != 0 {
		t.Fatalf("%d blocks in use after release", used)
	}
	// Blocks that went back sealed are handed out again and written whole.
	s := p.NewSeq()
	defer s.Release()
	keys, vals := randFill(s, r, 20)
	ks, vs := snapshot(s)
	for i := range ks {
		if maxDiff(ks[i], keys[i]) != 0 || maxDiff(vs[i], vals[i]) != 0 {
			t.Fatal("a reused block kept quantized contents")
		}
	}
	if s.StoredBytes() != s.Bytes() {
		t.Fatalf("fresh blocks: stored %d, Bytes %d", s.StoredBytes(), s.Bytes())
	}
}

// TestKeepAfterQuantize evicts from a quantized head: the kept tokens come
// back widened (dequantize → select), and Quantize seals them again.
func TestKeepAfterQuantize(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	p := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: 8, BlockTokens: 4})
	s := p.NewSeq()
	defer s.Release()
	randFill(s, r, 24)
	if err := s.Quantize(Int4, 4); err != nil {
		t.Fatal(err)
	}
	k0, v0 := snapshot(s)
	idx := []int{0, 2, 3, 5, 8, 9, 13, 14, 19, 20, 22, 23}
	if err := s.Keep(0, 0, idx); err != nil {
		t.Fatal(err)
	}
	k1, v1 := snapshot(s)
	v := s.View(0, 0)
	for i, j := range idx {
		if v.Pos(i) != j || v.Format(i) != F32 {
			t.Fatalf("kept token %d: position %d, %s", i, v.Pos(i), v.Format(i))
		}
		if maxDiff(k1[0][i*8:(i+1)*8], k0[0][j*8:(j+1)*8]) != 0 || maxDiff(v1[0][i*8:(i+1)*8], v0[0][j*8:(j+1)*8]) != 0 {
			t.Fatalf("kept token %d changed", i)
		}
	}
	if err := s.Quantize(Int4, 4); err != nil {
		t.Fatal(err)
	}
	if v := s.View(0, 0); v.Format(7) != Int4 || v.Format(8) != F32 {
		t.Fatalf("after re-quantizing: %s %s", v.Format(7), v.Format(8))
	}
	if want := 2*QuantBlockBytes(p.Config(), Int4) + p.BlockBytes(); s.StoredBytes() != want {
		t.Fatalf("stored %d, want %d", s.StoredBytes(), want)
	}
}

func TestQuantFormatNames(t *testing.T) {
	for _, f := range quantFormats {
		g, err := ParseQuantFormat(f.String())
		if err != nil || g != f || !f.Quantized() {
			t.Errorf("%s: %v %v", f, g, err)
		}
		if _, err := ParseFormat(f.String()); err == nil {
			t.Errorf("%s accepted as a pool format", f)
		}
	}
	if F32.Quantized() || BF16.Quantized() {
		t.Error("pool formats reported as quantized")
	}
}

func BenchmarkQuantScores(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const n, d = 32, 64
	for _, f := range []Format{BF16, Int4, Int2} {
		full := fullRows(BF16, kvRows(r, n, d), n, d)
		rw := full
		if f.Quantized() {
			rw = rows{q: quantizeRows(&full, f, n, d, false, make([]float32, n*d))}
		}
		q, dst, out := make([]float32, d), make([]float32, n), make([]float32, d)
		b.Run(f.String(), func(b *testing.B) {
			for b.Loop() {
				rw.scores(dst, q, 0, n, 1)
				rw.mix(out, dst, 0, n)
			}
		})
	}
}

// TestPoolCountsSealedBytes: the pool's used bytes and a sequence's Bytes
// follow sealing, widening and release, and sealing makes room under a
// budget.
func TestPoolCountsSealedBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	p := NewPool(PoolConfig{Layers: 1, KVHeads: 2, HeadDim: 8, BlockTokens: 4})
	p.cfg.Budget = 12 * p.BlockBytes()
	a := p.NewSeq()
	randFill(a, r, 24) // 6 blocks per head: the budget is full
	if _, avail := p.Stats(); avail != 0 || p.UsedBytes() != a.Bytes() {
		t.Fatalf("available %d, used %d, seq %d", avail, p.UsedBytes(), a.Bytes())
	}
	if err := a.Quantize(Int2, 4); err != nil {
		t.Fatal(err)
	}
	want := 2 * (5*QuantBlockBytes(p.Config(), Int2) + p.BlockBytes())
	if a.Bytes() != want || p.UsedBytes() != want {
		t.Fatalf("after sealing: seq %d, pool %d, want %d", a.Bytes(), p.UsedBytes(), want)
	}
	if _, avail := p.Stats(); avail < 6 {
		t.Fatalf("sealing freed room for %d blocks", avail)
	}
	b, _ := a.Fork(22) // shares 5 sealed blocks per head, copies the partial one
	if err := b.Truncate(18); err != nil {
		t.Fatal(err)
	}
	randFill(b, r, 1) // cow of the shared sealed block at 16…19
	if err := a.Truncate(18); err != nil {
		t.Fatal(err)
	}
	randFill(a, r, 1) // a owns its sealed block 16…19 again: widened in place
	if v := a.View(0, 0); v.Format(16) != F32 || v.Format(15) != Int2 {
		t.Fatalf("widened: %s %s", v.Format(15), v.Format(16))
	}
	sum := func() int64 { // every block once
		seen := map[*block]bool{}
		var n int64
		for _, s := range []*Seq{a, b} {
			for i := range s.heads {
				for _, blk := range s.heads[i].blocks {
					if !seen[blk] {
						seen[blk] = true
						n += blk.bytes()
					}
				}
			}
		}
		return n
	}
	if p.UsedBytes() != sum() {
		t.Fatalf("pool %d bytes, blocks hold %d", p.UsedBytes(), sum())
	}
	a.Release()
	b.Release()
	if used, _ := p.Stats(); used != 0 || p.UsedBytes() != 0 {
		t.Fatalf("after release: %d blocks, %d bytes", used, p.UsedBytes())
	}
	for _, blk := range p.free {
		if blk.k.q != nil || blk.v.q != nil {
			t.Fatal("a sealed block went back to the free list")
		}
	}
}

// TestQuantizeKV seals keys and values in different widths: the bytes fall
// between the two uniform widths, the keys read back as closely as int4
// keys do and the values as int2 values do.
func TestQuantizeKV(t *testing.T) {
	seal := func(fk, fv Format) (bytes int64, kErr, vErr float64) {
		r := rand.New(rand.NewPCG(9, 10))
		p := NewPool(PoolConfig{Layers: 2, KVHeads: 2, HeadDim: 64, BlockTokens: 32})
		s := p.NewSeq()
		defer s.Release()
		randFill(s, r, 128)
		k0, v0 := snapshot(s)
		if err := s.QuantizeKV(fk, fv, 0); err != nil {
			t.Fatal(err)
		}
		k1, v1 := snapshot(s)
		for i := range k0 {
			kErr, vErr = max(kErr, maxDiff(k0[i], k1[i])), max(vErr, maxDiff(v0[i], v1[i]))
		}
		return s.StoredBytes(), kErr, vErr
	}
	b4, k4, v4 := seal(Int4, Int4)
	b2, k2, v2 := seal(Int2, Int2)
	b42, k42, v42 := seal(Int4, Int2)
	if !(b2 < b42 && b42 < b4) {
		t.Errorf("bytes: int2 %d, int4 keys + int2 values %d, int4 %d", b2, b42, b4)
	}
	if k42 != k4 || v42 != v2 {
		t.Errorf("errors: keys %g (int4 %g), values %g (int2 %g)", k42, k4, v42, v2)
	}
	if !(k4 < k2 && v4 < v2) {
		t.Errorf("int4 is not closer than int2: keys %g vs %g, values %g vs %g", k4, k2, v4, v2)
	}
	p := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: 8})
	if err := p.NewSeq().QuantizeKV(Int4, BF16, 0); err == nil {
		t.Error("bf16 values were accepted as a quantized format")
	}
}
