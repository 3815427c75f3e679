package kvcache

import (
	"math"
	"strings"
	"testing"
)

// xlRead returns every key and value of a head as View.Key and
// View.Value give them.
func xlRead(s *Seq, l, h int) (keys, vals [][]float32) {
	v := s.View(l, h)
	for j := range v.Len() {
		k, x := make([]float32, dim), make([]float32, dim)
		v.Key(j, k)
		v.Value(j, x)
		keys, vals = append(keys, k), append(vals, x)
	}
	return keys, vals
}

func xlScaled(x []float32, s float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = s * v
	}
	return out
}

func xlNear(a, b []float32) bool {
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-3*(1+math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

// xlCheckScoresMix checks that Scores and Mix over the whole view agree with
// Key and Value.
func xlCheckScoresMix(t *testing.T, s *Seq, l, h int) {
	t.Helper()
	v := s.View(l, h)
	keys, vals := xlRead(s, l, h)
	q := make([]float32, dim)
	for i := range q {
		q[i] = float32(i%3) - 0.7
	}
	n := v.Len()
	for _, r := range [][2]int{{0, n}, {1, n - 1}, {3, 6}} {
		lo, hi := r[0], r[1]
		got := make([]float32, hi-lo)
		v.Scores(got, q, lo, hi, 0.5)
		p := make([]float32, hi-lo)
		mix := make([]float32, dim)
		want := make([]float32, dim)
		for j := lo; j < hi; j++ {
			var dot float32
			for c := range dim {
				dot += q[c] * keys[j][c]
			}
			if !xlNear([]float32{got[j-lo]}, []float32{0.5 * dot}) {
				t.Fatalf("layer %d head %d: score of token %d is %v, want %v", l, h, j, got[j-lo], 0.5*dot)
			}
			p[j-lo] = float32(j+1) / 10
			for c := range dim {
				want[c] += p[j-lo] * vals[j][c]
			}
		}
		v.Mix(mix, p, lo, hi)
		if !xlNear(mix, want) {
			t.Fatalf("layer %d head %d: Mix over [%d, %d) = %v, want %v", l, h, lo, hi, mix, want)
		}
	}
}

func TestShareHead(t *testing.T) {
	p := newTestPool(0)
	s := p.NewSeq()
	fill(s, 0, 10) // 2 layers × 2 heads × 3 blocks of 4 tokens
	srcK, srcV := xlRead(s, 0, 0)
	ks, vs := make([]float32, 10), make([]float32, 10)
	for j := range ks {
		ks[j], vs[j] = 1+float32(j)/4, 2-float32(j)/8
	}
	own := Retained{Index: 3, Key: vec(77, 0, 1), Value: vec(77, 0, -1)}
	if err := s.ShareHead(0, 1, 0, ks, vs, []Retained{own}); err != nil {
		t.Fatal(err)
	}
	bb := p.BlockBytes()
	extra := int64(4*2*10 + 4 + 2*dim*4) // scales, one retained token
	if used, _ := p.Stats(); used != 9 {
		t.Fatalf("%d blocks used, want 9 (layer 1 head 0 gave back 3)", used)
	}
	if got, want := p.UsedBytes(), 9*bb+extra; got != want {
		t.Fatalf("pool holds %d bytes, want %d", got, want)
	}
	if got, want := s.StoredBytes(), 9*bb+extra; got != want {
		t.Fatalf("StoredBytes %d, want %d", got, want)
	}
	if from, m, ok := s.SharesFrom(1, 0); !ok || from != 0 || m != 10 {
		t.Fatalf("SharesFrom = %d, %d, %v", from, m, ok)
	}
	if _, _, ok := s.SharesFrom(0, 0); ok {
		t.Fatal("the source reports sharing")
	}
	wantK := func(j int) []float32 {
		if j == 3 {
			return own.Key
		}
		return xlScaled(srcK[j], ks[j])
	}
	wantV := func(j int) []float32 {
		if j == 3 {
			return own.Value
		}
		return xlScaled(srcV[j], vs[j])
	}
	keys, vals := xlRead(s, 1, 0)
	for j := range 10 {
		if !xlNear(keys[j], wantK(j)) || !xlNear(vals[j], wantV(j)) {
			t.Fatalf("token %d reads %v / %v, want %v / %v", j, keys[j], vals[j], wantK(j), wantV(j))
		}
	}
	check(t, s, 0, 0, span(0, 10)) // the source reads as before
	check(t, s, 1, 1, span(0, 10)) // other heads untouched
	xlCheckScoresMix(t, s, 1, 0)
	if s.View(1, 0).Plain() {
		t.Fatal("a shared head reports plain blocks")
	}

	// Appends after the merge belong to each layer: the source copies its
	// shared partial block, the target writes into the old one.
	fill(s, 10, 12)
	if used, _ := p.Stats(); used != 10 {
		t.Fatalf("after appending, %d blocks used, want 10", used)
	}
	check(t, s, 0, 0, span(0, 12))
	keys, vals = xlRead(s, 1, 0)
	for j := range 12 {
		wk, wv := vec(j, 0, 1), vec(j, 0, -1)
		if j < 10 {
			wk, wv = wantK(j), wantV(j)
		}
		if !xlNear(keys[j], wk) || !xlNear(vals[j], wv) {
			t.Fatalf("after appending, token %d reads %v / %v", j, keys[j], vals[j])
		}
	}
	xlCheckScoresMix(t, s, 1, 0)
	if got, want := s.StoredBytes(), p.UsedBytes(); got != want {
		t.Fatalf("StoredBytes %d, pool %d: a single sequence should agree", got, want)
	}

	// A fork carries the scales; truncating it cuts them.
	f, err := s.Fork(12)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(5); err != nil {
		t.Fatal(err)
	}
	fk, _ := xlRead(f, 1, 0)
	for j := range 5 {
		if !xlNear(fk[j], wantK(j)) {
			t.Fatalf("fork token %d reads %v, want %v", j, fk[j], wantK(j))
		}
	}
	if _, m, ok := f.SharesFrom(1, 0); !ok || m != 5 {
		t.Fatalf("fork shares %d tokens (%v), want 5", m, ok)
	}
	f.Release()

	// Keep on the target gives it blocks of its own holding what it read.
	if err := s.Keep(1, 0, []int{0, 3, 7, 11}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.SharesFrom(1, 0); ok {
		t.Fatal("still sharing after Keep")
	}
	keys, _ = xlRead(s, 1, 0)
	for i, j := range []int{0, 3, 7} {
		if !xlNear(keys[i], wantK(j)) {
			t.Fatalf("kept token %d reads %v, want %v", j, keys[i], wantK(j))
		}
	}
	s.Release()
	if used, _ := p.Stats(); used != 0 || p.UsedBytes() != 0 {
		t.Fatalf("after Release: %d blocks, %d bytes", used, p.UsedBytes())
	}
}

func TestShareHeadRefused(t *testing.T) {
	ones := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = 1
		}
		return out
	}
	nan := ones(10)
	nan[4] = float32(math.NaN())
	good := Retained{Index: 2, Key: vec(1, 0, 1), Value: vec(1, 0, 1)}
	cases := []struct {
		name           string
		prep           func(s *Seq)
		from, to, head int
		ks, vs         []float32
		ret            []Retained
		want           string
	}{
		{"same layer", nil, 0, 0, 0, ones(10), ones(10), nil, "two different layers"},
		{"no such head", nil, 0, 1, 2, ones(10), ones(10), nil, "two different layers"},
		{"short scales", nil, 0, 1, 0, ones(9), ones(10), nil, "scales for 10 tokens"},
		{"nan scale", nil, 0, 1, 0, ones(10), nan, nil, "scales"},
		{"retained out of order", nil, 0, 1, 0, ones(10), ones(10), []Retained{good, good}, "ascending"},
		{"retained too short", nil, 0, 1, 0, ones(10), ones(10), []Retained{{Index: 1, Key: []float32{1}, Value: vec(1, 0, 1)}}, "elements"},
		{"different tokens", func(s *Seq) { _ = s.Keep(1, 0, []int{0, 1}) }, 0, 1, 0, ones(10), ones(10), nil, "tokens against"},
		{"quantized source", func(s *Seq) { _ = s.QuantizeHead(0, 0, Int8, 0) }, 0, 1, 0, ones(10), ones(10), nil, "quantized"},
		{"already shared", func(s *Seq) { _ = s.ShareHead(1, 0, 0, ones(10), ones(10), nil) }, 0, 1, 0, ones(10), ones(10), nil, "already shares"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPool(0)
			s := p.NewSeq()
			defer s.Release()
			fill(s, 0, 10)
			if c.prep != nil {
				c.prep(s)
			}
			before := p.UsedBytes()
			err := s.ShareHead(c.from, c.to, c.head, c.ks, c.vs, c.ret)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one saying %q", err, c.want)
			}
			if p.UsedBytes() != before {
				t.Fatalf("a refused share changed the pool: %d → %d bytes", before, p.UsedBytes())
			}
		})
	}
}

// TestShareHeadBF16 checks that on a bf16 pool a retained token is stored
// as a bf16 row — counted at 2 bytes an element, read back rounded as a
// block would round it.
func TestShareHeadBF16(t *testing.T) {
	p := NewPool(PoolConfig{Layers: 2, KVHeads: 2, HeadDim: dim, BlockTokens: 4, Format: BF16})
	s := p.NewSeq()
	fill(s, 0, 10)
	ks, vs := make([]float32, 10), make([]float32, 10)
	for j := range ks {
		ks[j], vs[j] = 1, 1
	}
	key := vec(77, 0, 1)
	key[0] = 1.00390625 // 1 + 2⁻⁸: not a bf16 value; rounds to 1
	own := Retained{Index: 3, Key: key, Value: vec(77, 0, -1)}
	if err := s.ShareHead(0, 1, 0, ks, vs, []Retained{own}); err != nil {
		t.Fatal(err)
	}
	if got, want := p.UsedBytes(), 9*p.BlockBytes()+int64(4*2*10+4+2*dim*2); got != want {
		t.Fatalf("pool holds %d bytes, want %d", got, want)
	}
	keys, _ := xlRead(s, 1, 0)
	if keys[3][0] != 1 {
		t.Fatalf("retained key element reads %v, want it rounded to bf16 (1)", keys[3][0])
	}
	xlCheckScoresMix(t, s, 1, 0)
}
