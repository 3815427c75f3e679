package kvcache

import "testing"

func TestKeepMerged(t *testing.T) {
	p := newTestPool(0)
	s := p.NewSeq()
	fill(s, 0, 16)
	other, _ := s.Fork(16)
	before, _ := p.Stats()
	keep := []int{0, 1, 2, 3, 9, 15}
	merged := make([]float32, dim)
	for i := range merged {
		merged[i] = 0.5 + float32(i)
	}
	values := [][]float32{nil, merged, nil, nil, merged, nil}
	if err := s.KeepMerged(1, 0, keep, values); err != nil {
		t.Fatal(err)
	}
	v := s.View(1, 0)
	if v.Len() != len(keep) {
		t.Fatalf("%d tokens kept, want %d", v.Len(), len(keep))
	}
	k, val := make([]float32, dim), make([]float32, dim)
	for i, pos := range keep {
		if v.Pos(i) != pos {
			t.Fatalf("token %d at position %d, want %d", i, v.Pos(i), pos)
		}
		v.Key(i, k)
		v.Value(i, val)
		want := vec(pos, 0, -1)
		if values[i] != nil {
			want = values[i]
		}
		for c := range dim {
			if k[c] != vec(pos, 0, 1)[c] {
				t.Fatalf("token %d key changed: %v", i, k)
			}
			if val[c] != want[c] {
				t.Fatalf("token %d value %v, want %v", i, val, want)
			}
		}
	}
	check(t, s, 1, 1, span(0, 16))     // other heads untouched
	check(t, other, 1, 0, span(0, 16)) // the fork sharing the old blocks untouched
	if after, _ := p.Stats(); after != before+2 {
		t.Fatalf("blocks %d → %d", before, after)
	}
	other.Release()
	if used, _ := p.Stats(); used != 4*4-4+2 {
		t.Fatalf("after the fork's release %d blocks used, want 14", used)
	}
	// Without a fork the old blocks go back to the pool.
	used0, _ := p.Stats()
	if err := s.KeepMerged(0, 0, []int{5}, [][]float32{merged}); err != nil {
		t.Fatal(err)
	}
	if used, _ := p.Stats(); used != used0-3 {
		t.Fatalf("blocks %d → %d, want 3 freed", used0, used)
	}
	for _, bad := range []struct {
		idx  []int
		vals [][]float32
	}{{[]int{2, 1}, nil}, {[]int{0}, [][]float32{merged, merged}}, {[]int{0}, [][]float32{merged[:3]}}} {
		if err := s.KeepMerged(0, 1, bad.idx, bad.vals); err == nil {
			t.Errorf("KeepMerged(%v, %d values) accepted", bad.idx, len(bad.vals))
		}
	}
	check(t, s, 0, 1, span(0, 16)) // refused calls change nothing
	s.Release()
	if used, _ := p.Stats(); used != 0 {
		t.Fatalf("%d blocks leaked", used)
	}
}

func TestKeepMergedQuantized(t *testing.T) {
	p := newTestPool(0)
	s := p.NewSeq()
	defer s.Release()
	fill(s, 0, 16)
	if err := s.QuantizeHead(0, 0, Int8, 0); err != nil {
		t.Fatal(err)
	}
	err := s.KeepMerged(0, 0, []int{0, 1}, [][]float32{nil, vec(0, 0, 1)})
	if err == nil || err.Error() != "kvcache: layer 0 head 0: merge needs an unquantized head" {
		t.Fatalf("err = %v", err)
	}
	if s.Len(0, 0) != 16 {
		t.Fatalf("refused merge changed the head: %d tokens", s.Len(0, 0))
	}
}
