package kvcache

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

const dim = 8

// vec returns a recognisable vector for token position p of head h.
func vec(p, h int, sign float32) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = sign * float32(p*100+h*10+i)
	}
	return v
}

// fill appends positions [from, to) to every head of s.
func fill(s *Seq, from, to int) {
	for p := from; p < to; p++ {
		for l := range s.Layers() {
			for h := range s.KVHeads() {
				s.Append(l, h, vec(p, h, 1), vec(p, h, -1), p)
			}
		}
	}
	s.Advance(to - from)
}

// check verifies that head (l, h) holds exactly the given positions with
// their keys and values.
func check(t *testing.T, s *Seq, l, h int, want []int) {
	t.Helper()
	v := s.View(l, h)
	if v.Len() != len(want) {
		t.Fatalf("head %d/%d has %d tokens, want %d", l, h, v.Len(), len(want))
	}
	k := make([]float32, dim)
	for j, p := range want {
		if v.Pos(j) != p {
			t.Fatalf("token %d at position %d, want %d", j, v.Pos(j), p)
		}
		v.Key(j, k)
		if k[3] != vec(p, h, 1)[3] {
			t.Fatalf("token %d key %v, want %v", j, k, vec(p, h, 1))
		}
		v.Value(j, k)
		if k[5] != vec(p, h, -1)[5] {
			t.Fatalf("token %d value %v", j, k)
		}
	}
}

func span(from, to int) []int {
	var out []int
	for p := from; p < to; p++ {
		out = append(out, p)
	}
	return out
}

func newTestPool(budgetBlocks int) *Pool {
	p := NewPool(PoolConfig{Layers: 2, KVHeads: 2, HeadDim: dim, BlockTokens: 4})
	p.cfg.Budget = int64(budgetBlocks) * p.blockBytes
	return p
}

func TestAppendTruncateRelease(t *testing.T) {
	p := newTestPool(0)
	s := p.NewSeq()
	fill(s, 0, 10)
	check(t, s, 1, 1, span(0, 10))
	if used, _ := p.Stats(); used != 4*3 { // 4 heads × ⌈10/4⌉ blocks
		t.Fatalf("%d blocks used, want 12", used)
	}
	if s.Bytes() != 12*p.BlockBytes() {
		t.Fatalf("Bytes %d", s.Bytes())
	}
	if err := s.Truncate(5); err != nil {
		t.Fatal(err)
	}
	check(t, s, 0, 1, span(0, 5))
	fill(s, 5, 7)
	check(t, s, 0, 0, span(0, 7))
	if err := s.Truncate(8); err == nil {
		t.Fatal("truncate past the end accepted")
	}
	s.Release()
	s.Release()
	if used, _ := p.Stats(); used != 0 {
		t.Fatalf("%d blocks still used after Release", used)
	}
}

func TestForkSharesAndCopiesOnWrite(t *testing.T) {
	p := newTestPool(0)
	a := p.NewSeq()
	fill(a, 0, 10)
	used0, _ := p.Stats()
	b, err := a.Fork(8) // two full blocks per head: shared, nothing copied
	if err != nil {
		t.Fatal(err)
	}
	if used, _ := p.Stats(); used != used0 {
		t.Fatalf("fork at a block boundary allocated %d blocks", used-used0)
	}
	c, _ := a.Fork(6) // splits a block: one private copy per head
	if used, _ := p.Stats(); used != used0+4 {
		t.Fatalf("fork inside a block: %d new blocks, want 4", used-used0)
	}
	fill(b, 8, 12)
	fill(c, 6, 9)
	check(t, a, 1, 0, span(0, 10))
	check(t, b, 1, 0, span(0, 12))
	check(t, c, 0, 1, span(0, 9))
	// Truncating a into a shared block must not disturb b.
	if err := a.Truncate(3); err != nil {
		t.Fatal(err)
	}
	fill(a, 3, 5)
	check(t, b, 0, 0, span(0, 12))
	check(t, a, 0, 0, span(0, 5))
	for _, s := range []*Seq{a, b, c} {
		s.Release()
	}
	if used, _ := p.Stats(); used != 0 {
		t.Fatalf("%d blocks leaked", used)
	}
}

func TestKeepFreesBlocks(t *testing.T) {
	p := newTestPool(0)
	s := p.NewSeq()
	fill(s, 0, 16)
	other, _ := s.Fork(16)
	before, _ := p.Stats()
	keep := []int{0, 1, 2, 3, 9, 15}
	if err := s.Keep(1, 0, keep); err != nil {
		t.Fatal(err)
	}
	check(t, s, 1, 0, keep)
	check(t, s, 1, 1, span(0, 16)) // other heads untouched
	check(t, other, 1, 0, span(0, 16))
	if after, _ := p.Stats(); after != before+2 { // new private blocks; the shared ones stay with other
		t.Fatalf("blocks %d → %d", before, after)
	}
	other.Release()
	if used, _ := p.Stats(); used != 4*4-4+2 {
		t.Fatalf("after the fork's release %d blocks used, want 14", used)
	}
	// The head keeps attending by original positions.
	lo, hi := s.View(1, 0).Span(3, 10)
	if lo != 3 || hi != 5 {
		t.Fatalf("span of positions 3…10 is [%d, %d), want [3, 5)", lo, hi)
	}
	// Appending after eviction continues the head.
	fill(s, 16, 17)
	check(t, s, 1, 0, append(keep, 16))
	for _, bad := range [][]int{{2, 1}, {0, 0}, {-1}, {99}} {
		if err := s.Keep(0, 0, bad); err == nil {
			t.Errorf("Keep(%v) accepted", bad)
		}
	}
}

func TestBudget(t *testing.T) {
	p := newTestPool(8)
	s := p.NewSeq()
	if err := s.Reserve(4); err != nil { // 4 heads × 1 block
		t.Fatal(err)
	}
	fill(s, 0, 4)
	if err := s.Reserve(5); !errors.Is(err, ErrBudget) { // needs 8 more
		t.Fatalf("Reserve over budget: %v", err)
	}
	if err := s.Reserve(4); err != nil {
		t.Fatal(err)
	}
	if used, avail := p.Stats(); used != 4 || avail != 4 {
		t.Fatalf("used %d available %d", used, avail)
	}
}

func TestScoresAndMix(t *testing.T) {
	for _, f := range []Format{F32, BF16} {
		t.Run(f.String(), func(t *testing.T) {
			p := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: dim, BlockTokens: 4, Format: f})
			s := p.NewSeq()
			r := rand.New(rand.NewPCG(1, 1))
			var keys, vals [][]float32
			for pos := range 11 {
				k, v := make([]float32, dim), make([]float32, dim)
				for i := range k {
					k[i], v[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
				}
				keys, vals = append(keys, k), append(vals, v)
				s.Append(0, 0, k, v, pos)
			}
			view := s.View(0, 0)
			q := keys[0]
			tol := 1e-5
			if f == BF16 {
				tol = 0.05 // bf16 keeps 8 bits of mantissa
			}
			lo, hi := 2, 10
			got := make([]float32, hi-lo)
			view.Scores(got, q, lo, hi, 0.5)
			out := make([]float32, dim)
			view.Mix(out, got, lo, hi)
			want := make([]float64, dim)
			for j := lo; j < hi; j++ {
				var dot float64
				for i := range q {
					dot += float64(q[i]) * float64(keys[j][i])
				}
				if math.Abs(dot*0.5-float64(got[j-lo])) > tol*(1+math.Abs(dot)) {
					t.Fatalf("score %d = %g, want %g", j, got[j-lo], dot*0.5)
				}
				for i := range want {
					want[i] += float64(got[j-lo]) * float64(vals[j][i])
				}
			}
			for i := range out {
				if math.Abs(float64(out[i])-want[i]) > tol*10 {
					t.Fatalf("mix[%d] = %g, want %g", i, out[i], want[i])
				}
			}
			wantBytes := int64(3) * (2*4*dim*int64(f.bytesPerValue()) + 4*4)
			if s.Bytes() != wantBytes {
				t.Fatalf("Bytes %d, want %d", s.Bytes(), wantBytes)
			}
		})
	}
}
