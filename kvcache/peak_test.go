package kvcache

import (
	"errors"
	"testing"
)

// TestKeepInPlace: a private head is compacted where it lies — the pool's
// high-water mark does not move — and keeps the right tokens.
func TestKeepInPlace(t *testing.T) {
	for _, f := range []Format{F32, BF16} {
		p := NewPool(PoolConfig{Layers: 1, KVHeads: 2, HeadDim: dim, BlockTokens: 4, Format: f})
		s := p.NewSeq()
		fill(s, 0, 10) // 3 blocks a head
		full := p.UsedBytes()
		p.ResetPeak()
		keep := []int{1, 2, 5, 8, 9}
		if err := s.Keep(0, 0, keep); err != nil {
			t.Fatal(err)
		}
		if p.PeakBytes() != full {
			t.Errorf("%v: peak %d after an in-place keep, want %d", f, p.PeakBytes(), full)
		}
		if got, want := p.UsedBytes(), full-p.BlockBytes(); got != want {
			t.Errorf("%v: %d bytes after keeping 5 of 10, want %d", f, got, want)
		}
		if f == F32 {
			check(t, s, 0, 0, keep)
			check(t, s, 0, 1, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
		}
		fill(s, 10, 11) // the head grows again after compaction
		if v := s.View(0, 0); v.Len() != 6 || v.Pos(5) != 10 {
			t.Errorf("%v: append after keep: %d tokens, last at %d", f, v.Len(), v.Pos(v.Len()-1))
		}
		s.Release()
	}
}

// TestKeepSharedRespectsBudget: a head shared with a fork must be copied;
// the copy is drawn within the budget, and a refused Keep leaves the head
// as it was.
func TestKeepSharedRespectsBudget(t *testing.T) {
	p := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: dim, BlockTokens: 4})
	p.cfg.Budget = 3 * p.BlockBytes()
	s := p.NewSeq()
	fill(s, 0, 12) // 3 blocks: the whole budget
	f, err := s.Fork(12)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Keep(0, 0, []int{0, 5, 11}); !errors.Is(err, ErrBudget) {
		t.Fatalf("keep over the budget: %v, want ErrBudget", err)
	}
	check(t, f, 0, 0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	s.Release() // the fork now holds the blocks alone: in place
	if err := f.Keep(0, 0, []int{0, 5, 11}); err != nil {
		t.Fatal(err)
	}
	check(t, f, 0, 0, []int{0, 5, 11})
	if p.UsedBytes() != p.BlockBytes() {
		t.Errorf("%d bytes held, want one block", p.UsedBytes())
	}
	f.Release()
}

func TestAdoptAndReleaseLayer(t *testing.T) {
	p := NewPool(PoolConfig{Layers: 2, KVHeads: 2, HeadDim: dim, BlockTokens: 4})
	base := p.NewSeq()
	fill(base, 0, 9)
	full := p.UsedBytes()
	a := p.NewSeq()
	if err := a.AdoptLayer(base, 1); err != nil {
		t.Fatal(err)
	}
	if p.UsedBytes() != full {
		t.Error("adopting copied blocks")
	}
	if err := a.AdoptLayer(base, 1); err == nil {
		t.Error("adopted into a full layer")
	}
	base.ReleaseLayer(1)
	if got := a.LayerBytes(1); got != full/2 || p.UsedBytes() != full {
		t.Errorf("layer 1: %d bytes in the adopter, %d in the pool, want %d and %d", got, p.UsedBytes(), full/2, full)
	}
	check(t, a, 1, 1, []int{0, 1, 2, 3, 4, 5, 6, 7, 8})
	base.Release()
	if p.UsedBytes() != full/2 {
		t.Errorf("%d bytes after the base went, want %d", p.UsedBytes(), full/2)
	}
	a.Release()
}
