package kvcache

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvserve/kvserve/compute"
)

func TestLowRankRecoversARankTwoMatrix(t *testing.T) {
	const n, d = 40, 8
	u1, u2 := make([]float32, n), make([]float32, n)
	v1, v2 := []float32{1, -2, 0, 3, 1, 0, -1, 2}, []float32{0, 1, 1, -1, 2, 3, 0, 0}
	for i := range n {
		u1[i], u2[i] = float32(i%7)-3, float32((i*5)%11)/4
	}
	m := make([]float32, n*d)
	for i := range n {
		for c := range d {
			m[i*d+c] = u1[i]*v1[c] + u2[i]*v2[c]
		}
	}
	for _, tc := range []struct {
		rank    int
		maxErr  float64 // relative Frobenius error
		wantDim int
	}{
		{2, 1e-4, 2},
		{4, 1e-4, 4},
		{1, 0.9, 1},
		{20, 1e-4, 8}, // capped at d
	} {
		a, b, r := lowRank(m, n, d, tc.rank, 3)
		if r != tc.wantDim {
			t.Fatalf("rank %d: got %d columns, want %d", tc.rank, r, tc.wantDim)
		}
		var num, den float64
		for i := range n {
			for c := range d {
				var s float32
				for k := range r {
					s += a[i*r+k] * b[c*r+k]
				}
				num += math.Pow(float64(m[i*d+c]-s), 2)
				den += math.Pow(float64(m[i*d+c]), 2)
			}
		}
		if e := math.Sqrt(num / den); e > tc.maxErr {
			t.Errorf("rank %d: relative error %.3g, want ≤ %.3g", tc.rank, e, tc.maxErr)
		}
	}
}

func TestGEAROutliers(t *testing.T) {
	const bt, d = 4, 4
	base := []float32{
		1, 2, 3, 4,
		1, 2, 3, 4,
		1, 2, 90, 4, // key channel 2 / value token 2 has an outlier
		1, 2, 3, 4,
	}
	cases := []struct {
		name     string
		perToken bool
		count    int
		want     []uint16
		replaced float32 // the outlier's new value
	}{
		{"keys: channel group", false, 1, []uint16{10}, 3},
		{"values: token group", true, 1, []uint16{10}, 3},
		{"none", false, 0, nil, 90},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := append([]float32(nil), base...)
			got := gearOutliers(x, bt, d, tc.perToken, tc.count)
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Fatalf("outliers %v, want %v", got, tc.want)
			}
			if math.Abs(float64(x[10]-tc.replaced)) > 1e-5 {
				t.Errorf("outlier now %v, want %v", x[10], tc.replaced)
			}
		})
	}
}

// gearTestSeq returns a one-head sequence of n tokens, HeadDim 16, blocks
// of 8, with key-like rows (an offset outlier channel) and one extreme
// entry in token 3's key and token 9's value.
func gearTestSeq(f Format, n int) (*Seq, [][]float32, [][]float32) {
	const d = 16
	s := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: d, BlockTokens: 8, Format: f}).NewSeq()
	r := rand.New(rand.NewPCG(7, 9))
	ks, vs := kvRows(r, n, d), kvRows(r, n, d)
	ks[3*d+7] = 60
	vs[9*d+2] = -45
	var keys, vals [][]float32
	for j := range n {
		k, v := ks[j*d:(j+1)*d], vs[j*d:(j+1)*d]
		if f == BF16 { // what the pool stores
			k, v = bf16Round(k), bf16Round(v)
		}
		keys, vals = append(keys, k), append(vals, v)
		s.Append(0, 0, k, v, j)
	}
	s.Advance(n)
	return s, keys, vals
}

func bf16Round(x []float32) []float32 {
	b := make([]uint16, len(x))
	compute.F32ToBF16(b, x)
	out := make([]float32, len(x))
	compute.BF16ToF32(out, b)
	return out
}

// viewErr returns the relative Frobenius error of the view's keys and
// values against the originals over tokens [0, n).
func viewErr(v View, keys, vals [][]float32, n int) (ke, ve float64) {
	d := len(keys[0])
	buf := make([]float32, d)
	var kn, kd, vn, vd float64
	for j := range n {
		v.Key(j, buf)
		for c := range d {
			kn += math.Pow(float64(buf[c]-keys[j][c]), 2)
			kd += math.Pow(float64(keys[j][c]), 2)
		}
		v.Value(j, buf)
		for c := range d {
			vn += math.Pow(float64(buf[c]-vals[j][c]), 2)
			vd += math.Pow(float64(vals[j][c]), 2)
		}
	}
	return math.Sqrt(kn / kd), math.Sqrt(vn / vd)
}

func TestGEARQuantize(t *testing.T) {
	const n, d, bt = 40, 16, 8
	cases := []struct {
		name string
		pool Format
		cfg  GEARConfig
	}{
		{"int2 rank 4, 2% sparse", F32, GEARConfig{Format: Int2, Residual: 8, Rank: 4, DecodeRank: 2, Sparsity: 0.02, Iters: 3}},
		{"int4 rank 4, 2% sparse, bf16 pool", BF16, GEARConfig{Format: Int4, Residual: 8, Rank: 4, Sparsity: 0.02, Iters: 3}},
		{"int2 sparse only", F32, GEARConfig{Format: Int2, Residual: 8, Sparsity: 0.05, Iters: 1}},
		{"int2 low rank only", F32, GEARConfig{Format: Int2, Residual: 8, Rank: 2, Iters: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, keys, vals := gearTestSeq(tc.pool, n)
			kivi, err := s.Fork(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := kivi.Quantize(tc.cfg.Format, tc.cfg.Residual); err != nil {
				t.Fatal(err)
			}
			if err := s.GEARQuantize(tc.cfg); err != nil {
				t.Fatal(err)
			}
			sealed := (n - tc.cfg.Residual) / bt * bt
			v := s.View(0, 0)
			for j := range n {
				if want := tc.cfg.Format; j >= sealed {
					want = tc.pool
					if v.Format(j) != want {
						t.Fatalf("token %d stored as %s, want %s", j, v.Format(j), want)
					}
				} else if v.Format(j) != want {
					t.Fatalf("token %d stored as %s, want %s", j, v.Format(j), want)
				}
			}
			// The corrections only help: GEAR reads back closer than
			// KIVI alone with the same codes' width and groups.
			gk, gv := viewErr(v, keys, vals, sealed)
			kk, kv := viewErr(kivi.View(0, 0), keys, vals, sealed)
			t.Logf("relative error: gear keys %.4f values %.4f, kivi %.4f %.4f", gk, gv, kk, kv)
			if gk >= kk || gv >= kv {
				t.Errorf("gear error %.4f/%.4f not below kivi's %.4f/%.4f", gk, gv, kk, kv)
			}
			// The extreme entries are sparse corrections, exact up to
			// float16 rounding of the correction.
			key, val := make([]float32, d), make([]float32, d)
			v.Key(3, key)
			v.Value(9, val)
			if tc.cfg.Sparsity > 0 && (math.Abs(float64(key[7]-keys[3][7])) > 0.05 || math.Abs(float64(val[2]-vals[9][2])) > 0.05) {
				t.Errorf("outliers read back as %v and %v, want %v and %v", key[7], val[2], keys[3][7], vals[9][2])
			}
			checkFused(t, v, n, d)
			// Bytes, counted from the parts.
			blocks := sealed / bt
			per := tc.cfg.Format.Bits() * d / 8 * bt
			sparse := int(math.Round(tc.cfg.Sparsity * bt * d))
			r := min(tc.cfg.Rank, d)
			kBlock := per + 2*2*d + 2*bt*r + 4*sparse
			vBlock := per + 2*2*bt*((d+ValueGroup-1)/ValueGroup) + 2*bt*r + 4*sparse
			want := int64(blocks*(kBlock+vBlock+4*bt) + 2*2*d*r + (n-sealed)/bt*int(s.Pool().BlockBytes()))
			if got := s.StoredBytes(); got != want {
				t.Errorf("stored %d bytes, want %d", got, want)
			}
			kivi.Release()
			if got := s.Pool().UsedBytes(); got != s.StoredBytes() {
				t.Errorf("pool counts %d bytes, the sequence %d", got, s.StoredBytes())
			}
			s.Release()
			if got := s.Pool().UsedBytes(); got != 0 {
				t.Errorf("%d bytes left after Release", got)
			}
		})
	}
}

// checkFused compares the view's Scores and Mix, which read GEAR's parts
// without widening, with the same sums over widened keys and values.
func checkFused(t *testing.T, v View, n, d int) {
	t.Helper()
	q := make([]float32, d)
	p := make([]float32, n)
	for c := range q {
		q[c] = float32(c%5) - 2
	}
	for j := range p {
		p[j] = 1 / float32(n)
	}
	sc := make([]float32, n)
	v.Scores(sc, q, 0, n, 0.25)
	out := make([]float32, d)
	v.Mix(out, p, 0, n)
	key, val, want := make([]float32, d), make([]float32, d), make([]float32, d)
	for j := range n {
		v.Key(j, key)
		v.Value(j, val)
		var s float32
		for c := range d {
			s += q[c] * key[c]
			want[c] += p[j] * val[c]
		}
		if math.Abs(float64(sc[j]-0.25*s)) > 1e-3*(1+math.Abs(float64(s))) {
			t.Errorf("token %d: score %v, widened %v", j, sc[j], 0.25*s)
		}
	}
	for c := range d {
		if math.Abs(float64(out[c]-want[c])) > 1e-3*(1+math.Abs(float64(want[c]))) {
			t.Errorf("mix channel %d: %v, widened %v", c, out[c], want[c])
		}
	}
}

// TestGEARDecodeSegments seals a second segment after more tokens arrive:
// it gets the decode rank and a factor of its own, and writing into a
// sealed block after Truncate widens it with the count kept exact.
func TestGEARDecodeSegments(t *testing.T) {
	s, keys, vals := gearTestSeq(F32, 48)
	cfg := GEARConfig{Format: Int4, Residual: 16, Rank: 4, DecodeRank: 2, Sparsity: 0.02, Iters: 2}
	if err := s.GEARQuantize(cfg); err != nil {
		t.Fatal(err)
	}
	h := s.list(0, 0)
	for i := range 8 { // a block's worth of decoded tokens
		s.Append(0, 0, keys[40+i], vals[40+i], 48+i)
	}
	s.Advance(8)
	if err := s.GEARQuantize(cfg); err != nil {
		t.Fatal(err)
	}
	wantRank := []int{4, 4, 4, 4, 2, 0, 0}
	for bi, want := range wantRank {
		g, ok := h.blocks[bi].k.x.(*gearRows)
		if (want > 0) != ok {
			t.Fatalf("block %d sealed %v, want %v", bi, ok, want > 0)
		}
		if ok && (g.f.r != want || g.owner != (bi == 0 || bi == 4)) {
			t.Errorf("block %d: rank %d owner %v, want rank %d", bi, g.f.r, g.owner, want)
		}
	}
	if err := s.Truncate(20); err != nil {
		t.Fatal(err)
	}
	before := make([]float32, 16)
	s.View(0, 0).Key(17, before)
	s.Append(0, 0, keys[20], vals[20], 20)
	s.Advance(1)
	after := make([]float32, 16)
	s.View(0, 0).Key(17, after)
	for c := range after {
		if after[c] != before[c] {
			t.Fatalf("widening changed token 17: %v → %v", before, after)
		}
	}
	if _, ok := h.blocks[2].k.x.(*gearRows); ok {
		t.Error("block 2 is still sealed after an append into it")
	}
	if got, want := s.Pool().UsedBytes(), s.StoredBytes(); got != want {
		t.Errorf("pool counts %d bytes, the sequence %d", got, want)
	}
	s.Release()
	if got := s.Pool().UsedBytes(); got != 0 {
		t.Errorf("%d bytes left after Release", got)
	}
}

func TestGEARConfigErrors(t *testing.T) {
	s, _, _ := gearTestSeq(F32, 16)
	for _, cfg := range []GEARConfig{
		{Format: F32, Iters: 1},
		{Format: Int2, Residual: 5, Iters: 1},
		{Format: Int2, Rank: -1, Iters: 1},
		{Format: Int2, Sparsity: 0.7, Iters: 1},
		{Format: Int2, Iters: 0},
	} {
		if err := s.GEARQuantize(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
