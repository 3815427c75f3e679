package kvcache

import (
	"math"
	"testing"
)

// thinSeq returns a one-head sequence of n tokens with HeadDim 8 and
// blocks of 4: token j's key channel c is 10·j + c + 1 (so every entry is
// distinct and nonzero) and its value channel c is −(10·j + c + 1).
func thinSeq(t *testing.T, f Format, n int) *Seq {
	t.Helper()
	s := NewPool(PoolConfig{Layers: 1, KVHeads: 1, HeadDim: 8, BlockTokens: 4, Format: f}).NewSeq()
	for j := range n {
		k, v := make([]float32, 8), make([]float32, 8)
		for c := range 8 {
			k[c] = float32(10*j + c + 1)
			v[c] = -k[c]
		}
		s.Append(0, 0, k, v, j)
	}
	s.Advance(n)
	return s
}

func TestPruneKeyChannels(t *testing.T) {
	cases := []struct {
		name   string
		f      Format
		keep   []int
		recent int
		pruned int // tokens whose keys lose channels
	}{
		{"f32 three channels, one recent block", F32, []int{1, 3, 6}, 4, 8},
		{"f32 recent rounds up to whole blocks", F32, []int{0, 7}, 5, 4},
		{"bf16 no recent window", BF16, []int{2, 3, 4, 5}, 0, 12},
		{"f32 window covers everything", F32, []int{1}, 12, 0},
		{"f32 every channel kept", F32, []int{0, 1, 2, 3, 4, 5, 6, 7}, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := thinSeq(t, tc.f, 12)
			full := s.StoredBytes()
			if err := s.PruneKeyChannels(0, 0, tc.keep, tc.recent); err != nil {
				t.Fatal(err)
			}
			kept := map[int]bool{}
			for _, c := range tc.keep {
				kept[c] = true
			}
			v := s.View(0, 0)
			key, val := make([]float32, 8), make([]float32, 8)
			q := []float32{1, -2, 3, -4, 5, -6, 7, -8}
			sc := make([]float32, 12)
			v.Scores(sc, q, 0, 12, 0.5)
			for j := range 12 {
				v.Key(j, key)
				v.Value(j, val)
				var want float32
				for c := range 8 {
					orig := float32(10*j + c + 1)
					wk := orig
					if j < tc.pruned && !kept[c] {
						wk = 0
					}
					if key[c] != wk || val[c] != -orig {
						t.Fatalf("token %d channel %d: key %v value %v, want %v and %v", j, c, key[c], val[c], wk, -orig)
					}
					want += q[c] * wk
				}
				if sc[j] != 0.5*want {
					t.Errorf("token %d: score %v, want %v (kept channels only)", j, sc[j], 0.5*want)
				}
			}
			// Bytes: a pruned block's keys hold 4 tokens × kept channels
			// plus a uint16 per kept channel.
			blocks := int64(tc.pruned / 4)
			el := int64(tc.f.bytesPerValue())
			want := full - blocks*(4*8*el) + blocks*(4*int64(len(tc.keep))*el+2*int64(len(tc.keep)))
			if len(tc.keep) == 8 {
				want = full
			}
			if got := s.StoredBytes(); got != want {
				t.Errorf("stored %d bytes, want %d (full %d)", got, want, full)
			}
			if got := s.Pool().UsedBytes(); got != s.StoredBytes() {
				t.Errorf("pool counts %d bytes, the sequence %d", got, s.StoredBytes())
			}
			s.Release()
			if got := s.Pool().UsedBytes(); got != 0 {
				t.Errorf("%d bytes left in the pool after Release", got)
			}
		})
	}
}

func TestPruneKeyChannelsMix(t *testing.T) {
	s := thinSeq(t, F32, 8)
	if err := s.PruneKeyChannels(0, 0, []int{2, 5}, 0); err != nil {
		t.Fatal(err)
	}
	// Keys are never mixed by attention, but a pruned block still mixes
	// like the keys it reads back.
	p := []float32{0.5, 0.25, 0.125, 0.125}
	out := make([]float32, 8)
	s.list(0, 0).blocks[1].k.mix(out, p, 0, 4)
	for c := range 8 {
		var want float32
		if c == 2 || c == 5 {
			for i, w := range p {
				want += w * float32(10*(4+i)+c+1)
			}
		}
		if math.Abs(float64(out[c]-want)) > 1e-4 {
			t.Errorf("channel %d: %v, want %v", c, out[c], want)
		}
	}
}

func TestPruneKeyChannelsErrors(t *testing.T) {
	s := thinSeq(t, F32, 8)
	for _, keep := range [][]int{{3, 1}, {1, 1}, {-1, 2}, {8}} {
		if err := s.PruneKeyChannels(0, 0, keep, 0); err == nil {
			t.Errorf("keep %v: no error", keep)
		}
	}
	if err := s.PruneKeyChannels(0, 0, []int{1}, -4); err == nil {
		t.Error("negative window: no error")
	}
}

// TestPruneKeyChannelsShared prunes a fork: the original keeps every
// channel, and writing into a pruned block after Truncate widens it with
// the pool's count kept exact.
func TestPruneKeyChannelsShared(t *testing.T) {
	s := thinSeq(t, BF16, 12)
	f, err := s.Fork(12)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.PruneKeyChannels(0, 0, []int{0, 4}, 4); err != nil {
		t.Fatal(err)
	}
	key := make([]float32, 8)
	s.View(0, 0).Key(5, key)
	if key[1] != 52 {
		t.Fatalf("the original lost channel 1 of token 5: %v", key)
	}
	f.View(0, 0).Key(5, key)
	if key[1] != 0 || key[4] != 55 {
		t.Fatalf("the fork's token 5 reads %v, want channel 1 pruned and 4 kept", key)
	}
	if err := f.Truncate(6); err != nil {
		t.Fatal(err)
	}
	f.Append(0, 0, make([]float32, 8), make([]float32, 8), 6)
	f.View(0, 0).Key(5, key)
	if key[1] != 0 || key[4] != 55 {
		t.Fatalf("after widening, token 5 reads %v", key)
	}
	if used, sum := s.Pool().UsedBytes(), s.StoredBytes()+f.StoredBytes(); used > sum || used <= 0 {
		t.Errorf("pool counts %d bytes, the sequences %d", used, sum)
	}
	f.Release()
	s.Release()
	if got := s.Pool().UsedBytes(); got != 0 {
		t.Errorf("%d bytes left in the pool after Release", got)
	}
}
