package kvcache

import (
	"strings"
	"testing"
)

func TestKeepMergedKV(t *testing.T) {
	mk, mv := vec(50, 0, 1), vec(60, 0, -1)
	cases := []struct {
		name       string
		keep       []int
		keys, vals [][]float32
		// want[i] is the (key, value) token i reads: −1 for the merged
		// vectors, else the original position.
		wantK, wantV []int
	}{
		{"keys and values", []int{0, 4, 9}, [][]float32{nil, mk, nil}, [][]float32{nil, mv, nil}, []int{0, -1, 9}, []int{0, -1, 9}},
		{"keys only", []int{2, 3}, [][]float32{mk, nil}, nil, []int{-1, 3}, []int{2, 3}},
		{"values only", []int{1, 8}, nil, [][]float32{nil, mv}, []int{1, 8}, []int{1, -1}},
		{"plain keep", []int{5}, nil, nil, []int{5}, []int{5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPool(0)
			s := p.NewSeq()
			fill(s, 0, 10)
			other, _ := s.Fork(10)
			if err := s.KeepMergedKV(1, 0, c.keep, c.keys, c.vals); err != nil {
				t.Fatal(err)
			}
			keys, vals := xlRead(s, 1, 0)
			v := s.View(1, 0)
			for i, pos := range c.keep {
				if v.Pos(i) != pos {
					t.Fatalf("token %d at position %d, want %d", i, v.Pos(i), pos)
				}
				wk, wv := mk, mv
				if c.wantK[i] >= 0 {
					wk = vec(c.wantK[i], 0, 1)
				}
				if c.wantV[i] >= 0 {
					wv = vec(c.wantV[i], 0, -1)
				}
				if !xlNear(keys[i], wk) || !xlNear(vals[i], wv) {
					t.Fatalf("token %d reads %v / %v, want %v / %v", i, keys[i], vals[i], wk, wv)
				}
			}
			check(t, other, 1, 0, span(0, 10)) // the fork keeps the old blocks
			other.Release()
			blocks := 3*3 + (len(c.keep)+3)/4
			if used, _ := p.Stats(); used != blocks {
				t.Fatalf("%d blocks used, want %d", used, blocks)
			}
			s.Release()
		})
	}
}

func TestKeepMergedKVRefused(t *testing.T) {
	cases := []struct {
		name       string
		quantize   bool
		keep       []int
		keys, vals [][]float32
		want       string
	}{
		{"key count", false, []int{0, 1}, [][]float32{nil}, nil, "2 kept tokens"},
		{"key length", false, []int{0}, [][]float32{{1, 2}}, nil, "has 2 elements"},
		{"value length", false, []int{0}, nil, [][]float32{{1, 2}}, "has 2 elements"},
		{"indices", false, []int{3, 1}, nil, nil, "ascending"},
		{"quantized", true, []int{0}, [][]float32{vec(1, 0, 1)}, nil, "unquantized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPool(0)
			s := p.NewSeq()
			defer s.Release()
			fill(s, 0, 8)
			if c.quantize {
				if err := s.QuantizeHead(0, 0, Int8, 0); err != nil {
					t.Fatal(err)
				}
			}
			err := s.KeepMergedKV(0, 0, c.keep, c.keys, c.vals)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one saying %q", err, c.want)
			}
			if s.Len(0, 0) != 8 {
				t.Fatalf("a refused merge changed the head: %d tokens", s.Len(0, 0))
			}
		})
	}
}
