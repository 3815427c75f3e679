package kvcache

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
)

// partRows is what QuantizeMixed should store for the tokens of one block
// whose flag equals want: those rows, in block order, quantized alone.
func partRows(x []float32, flags []bool, want bool, f Format, d int, perToken bool) []float32 {
	var sel []float32
	for j, fl := range flags {
		if fl == want {
			sel = append(sel, x[j*d:(j+1)*d]...)
		}
	}
	n := len(sel) / d
	if n == 0 || !f.Quantized() {
		return sel
	}
	src := rows{f32: sel}
	q := quantizeRows(&src, f, n, d, perToken, make([]float32, n*d))
	out := make([]float32, n*d)
	for i := range n {
		q.row(i, out[i*d:(i+1)*d])
	}
	return out
}

// TestQuantizeMixed seals one head with hand-chosen precision flags and
// checks, token by token, the format, the position and the stored key and
// value: each must equal its part quantized on its own (so a token read
// from the wrong part or the wrong row fails), and the bytes must be
// MixedBlockBytes per sealed block.
func TestQuantizeMixed(t *testing.T) {
	const bt, d, n = 4, 8, 14 // three full blocks and a partial one
	T, F := true, false
	cases := []struct {
		name     string
		hi, lo   Format
		flags    []bool
		residual int
		sealed   int // blocks sealed
	}{
		{"full+int2 mixed", F32, Int2, []bool{T, F, F, T, F, T, T, T, F, F, F, F, T, F}, 0, 3},
		{"int8+int2 mixed", Int8, Int2, []bool{F, T, F, F, T, T, F, T, T, T, T, T, F, T}, 0, 3},
		{"int4+int2 residual", Int4, Int2, []bool{T, F, T, F, F, F, T, T, T, F, F, T, F, F}, 4, 2},
		{"int4 lo = hi", Int4, Int4, []bool{T, F, F, F, F, F, F, F, T, T, T, T, F, F}, 0, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(21, 22))
			p := NewPool(PoolConfig{Layers: 1, KVHeads: 2, HeadDim: d, BlockTokens: bt})
			s := p.NewSeq()
			keys, vals := randFill(s, r, n)
			if err := s.QuantizeMixed(0, 0, tc.flags, tc.hi, tc.lo, tc.residual); err != nil {
				t.Fatal(err)
			}
			v := s.View(0, 0)
			var want int64
			for bi := range (n + bt - 1) / bt {
				flags := tc.flags[bi*bt : min(n, (bi+1)*bt)]
				if bi >= tc.sealed {
					want += p.BlockBytes()
					for j := range flags {
						if f := v.Format(bi*bt + j); f != F32 {
							t.Errorf("token %d of unsealed block: %s", bi*bt+j, f)
						}
					}
					continue
				}
				nh := 0
				for _, f := range flags {
					if f {
						nh++
					}
				}
				want += MixedBlockBytes(p.Config(), tc.hi, tc.lo, nh)
				x, y := keys[0][bi*bt*d:(bi+1)*bt*d], vals[0][bi*bt*d:(bi+1)*bt*d]
				for _, want := range []bool{true, false} {
					f := tc.lo
					if want {
						f = tc.hi
					}
					kp, vp := partRows(x, flags, want, f, d, false), partRows(y, flags, want, f, d, true)
					i := 0
					for j, fl := range flags {
						if fl != want {
							continue
						}
						tok := bi*bt + j
						k, val := make([]float32, d), make([]float32, d)
						v.Key(tok, k)
						v.Value(tok, val)
						if v.Format(tok) != f || v.Pos(tok) != tok {
							t.Fatalf("token %d: %s at %d, want %s at %d", tok, v.Format(tok), v.Pos(tok), f, tok)
						}
						if maxDiff(k, kp[i*d:(i+1)*d]) != 0 || maxDiff(val, vp[i*d:(i+1)*d]) != 0 {
							t.Fatalf("token %d (%s): key or value differs from its part quantized alone", tok, f)
						}
						i++
					}
				}
			}
			want += p.BlockBytes() * int64((n+bt-1)/bt) // head 1 untouched
			if s.StoredBytes() != want || p.UsedBytes() != want {
				t.Fatalf("stored %d, pool %d, want %d", s.StoredBytes(), p.UsedBytes(), want)
			}
			checkScoresMix(t, v, r)
			s.Release()
			if p.UsedBytes() != 0 {
				t.Fatalf("after release: %d bytes", p.UsedBytes())
			}
		})
	}
}

// checkScoresMix compares View.Scores and View.Mix over ranges that start
// and end inside blocks with dot products and sums over Key and Value.
func checkScoresMix(t *testing.T, v View, r *rand.Rand) {
	t.Helper()
	d := v.d
	q := make([]float32, d)
	for i := range q {
		q[i] = float32(r.NormFloat64())
	}
	for _, span := range [][2]int{{0, v.Len()}, {1, v.Len() - 1}, {5, 7}, {2, 3}} {
		lo, hi := span[0], span[1]
		got := make([]float32, hi-lo)
		v.Scores(got, q, lo, hi, 0.5)
		out, want := make([]float32, d), make([]float32, d)
		v.Mix(out, got, lo, hi)
		k, x := make([]float32, d), make([]float32, d)
		for j := lo; j < hi; j++ {
			v.Key(j, k)
			v.Value(j, x)
			s := 0.5 * compute.Dot(q, k)
			if math.Abs(float64(got[j-lo]-s)) > 1e-3*(1+math.Abs(float64(s))) {
				t.Fatalf("[%d,%d) score %d = %g, want %g", lo, hi, j, got[j-lo], s)
			}
			compute.Axpy(want, got[j-lo], x)
		}
		for c := range d {
			if math.Abs(float64(out[c]-want[c])) > 1e-3*(1+math.Abs(float64(want[c]))) {
				t.Fatalf("[%d,%d) mix[%d] = %g, want %g", lo, hi, c, out[c], want[c])
			}
		}
	}
}

// TestQuantizeMixedUniform: a block whose tokens all share a precision is
// sealed as Quantize seals it, or left alone when all stay in the pool's
// format.
func TestQuantizeMixedUniform(t *testing.T) {
	const bt, d = 4, 8
	for _, tc := range []struct {
		hi   Format
		high bool
		want Format
		size func(PoolConfig) int64
	}{
		{BF16, true, BF16, func(c PoolConfig) int64 { return NewPool(c).BlockBytes() }},
		{BF16, false, Int2, func(c PoolConfig) int64 { return QuantBlockBytes(c, Int2) }},
		{Int4, true, Int4, func(c PoolConfig) int64 { return QuantBlockBytes(c, Int4) }},
	} {
		p := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: d, BlockTokens: bt, Format: BF16})
		s := p.NewSeq()
		randFill(s, rand.New(rand.NewPCG(1, 2)), bt)
		flags := []bool{tc.high, tc.high, tc.high, tc.high}
		if err := s.QuantizeMixed(0, 0, flags, tc.hi, Int2, 0); err != nil {
			t.Fatal(err)
		}
		if f := s.View(0, 0).Format(2); f != tc.want || s.StoredBytes() != tc.size(p.Config()) {
			t.Errorf("hi %s, all high %v: %s in %d bytes, want %s in %d", tc.hi, tc.high, f, s.StoredBytes(), tc.want, tc.size(p.Config()))
		}
		if tc.want == Int2 && MixedBlockBytes(p.Config(), tc.hi, Int2, 0) != QuantBlockBytes(p.Config(), Int2) {
			t.Errorf("MixedBlockBytes with no high token differs from QuantBlockBytes")
		}
	}
}

// TestMixedForkTruncateKeep: a mixed block shared by a fork is copied, not
// changed under the other sequence; writing into it widens it back to the
// pool's format with the values it held; Keep dequantizes kept tokens.
func TestMixedForkTruncateKeep(t *testing.T) {
	const bt, d = 4, 8
	r := rand.New(rand.NewPCG(9, 10))
	p := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: d, BlockTokens: bt})
	a := p.NewSeq()
	randFill(a, r, 10)
	b, _ := a.Fork(10)
	flags := []bool{true, false, false, true, false, true, false, false, true, true}
	if err := b.QuantizeMixed(0, 0, flags, F32, Int2, 0); err != nil {
		t.Fatal(err)
	}
	if a.View(0, 0).Format(1) != F32 || b.View(0, 0).Format(1) != Int2 || b.View(0, 0).Format(0) != F32 {
		t.Fatal("sealing the fork changed the original, or did not seal the fork")
	}
	before, _ := snapshot(b)
	if err := b.Truncate(6); err != nil {
		t.Fatal(err)
	}
	randFill(b, r, 1) // into the mixed block 4…7: widened
	after, _ := snapshot(b)
	if v := b.View(0, 0); v.Format(5) != F32 || v.Format(1) != Int2 || maxDiff(after[0][:6*d], before[0][:6*d]) != 0 {
		t.Fatalf("after writing into the mixed block: %s %s, diff %g", v.Format(5), v.Format(1), maxDiff(after[0][:6*d], before[0][:6*d]))
	}
	if err := b.Keep(0, 0, []int{0, 1, 3}); err != nil {
		t.Fatal(err)
	}
	kept, _ := snapshot(b)
	v := b.View(0, 0)
	if v.Format(1) != F32 || v.Pos(2) != 3 || maxDiff(kept[0], append(append([]float32{}, before[0][:2*d]...), before[0][3*d:4*d]...)) != 0 {
		t.Fatal("Keep after mixed sealing lost values or positions")
	}
	a.Release()
	b.Release()
	if p.UsedBytes() != 0 {
		t.Fatalf("after release: %d bytes", p.UsedBytes())
	}
}

func TestQuantizeMixedErrors(t *testing.T) {
	p := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: 8, BlockTokens: 4})
	s := p.NewSeq()
	randFill(s, rand.New(rand.NewPCG(3, 3)), 4)
	ok := []bool{true, false, true, false}
	for _, tc := range []struct {
		flags    []bool
		hi, lo   Format
		residual int
		want     string
	}{
		{ok, F32, F32, 0, "not a quantized format"},
		{ok, BF16, Int2, 0, "pool's format"},
		{ok, Int2, Int4, 0, "narrower"},
		{ok, Int4, Int2, 3, "multiple"},
		{ok[:3], Int4, Int2, 0, "3 precision flags for 4 tokens"},
	} {
		if err := s.QuantizeMixed(0, 0, tc.flags, tc.hi, tc.lo, tc.residual); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s/%s residual %d: error %v, want %q", tc.hi, tc.lo, tc.residual, err, tc.want)
		}
	}
}
