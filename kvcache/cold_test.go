package kvcache

import (
	"slices"
	"testing"
)

// TestOffload moves blocks to a cold tier, in memory and on disk, and
// checks that every read gives the same keys, values, scores and mixes,
// that the pool's bytes fall by the rows moved, that reads are counted as
// fetches, and that a fork, a truncation and an append still work.
func TestOffload(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		disk   bool
	}{
		{"f32-memory", F32, false},
		{"bf16-memory", BF16, false},
		{"bf16-disk", BF16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := NewPool(PoolConfig{Layers: 1, KVHeads: 2, HeadDim: dim, Format: tc.format})
			s := pool.NewSeq()
			fill(s, 0, 150)
			want := s.View(0, 1)
			keys, vals := rowsOf(want), valuesOf(want)
			q := vec(3, 0, 0.01)
			wantScores := make([]float32, 150)
			want.Scores(wantScores, q, 0, 150, 0.5)
			wantMix := make([]float32, dim)
			want.Mix(wantMix, wantScores, 0, 150)

			tier := NewColdTier()
			if tc.disk {
				var err error
				if tier, err = NewDiskTier(t.TempDir()); err != nil {
					t.Fatal(err)
				}
			}
			defer tier.Close()
			before := s.StoredBytes()
			moved, err := s.Offload(0, 1, 4, 130, tier) // blocks 1, 2, 3: tokens 32…127
			if err != nil || moved != 96 {
				t.Fatalf("moved %d tokens (%v), want 96", moved, err)
			}
			if again, _ := s.Offload(0, 1, 0, 150, tier); again != 32 { // block 0 only: the rest is cold or partial
				t.Fatalf("second offload moved %d tokens, want 32", again)
			}
			rowBytes := int64(dim * map[Format]int{F32: 4, BF16: 2}[tc.format])
			if got, want := before-s.StoredBytes(), 2*128*rowBytes; got != want {
				t.Errorf("pool bytes fell by %d, want %d", got, want)
			}
			if tier.Bytes() != 2*128*rowBytes {
				t.Errorf("tier holds %d bytes, want %d", tier.Bytes(), 2*128*rowBytes)
			}
			v := s.View(0, 1)
			if !v.Offloaded(40) || v.Offloaded(140) {
				t.Errorf("Offloaded(40) %v, Offloaded(140) %v; want true, false", v.Offloaded(40), v.Offloaded(140))
			}
			if tier.Fetched() != 0 {
				t.Fatalf("%d bytes fetched before any read", tier.Fetched())
			}
			if !slices.Equal(rowsOf(v), keys) || !slices.Equal(valuesOf(v), vals) {
				t.Fatal("keys or values differ once offloaded")
			}
			if tier.Fetched() != 2*128*rowBytes {
				t.Errorf("reading every row fetched %d bytes, want %d", tier.Fetched(), 2*128*rowBytes)
			}
			got := make([]float32, 150)
			v.Scores(got, q, 0, 150, 0.5)
			mix := make([]float32, dim)
			v.Mix(mix, got, 0, 150)
			for j := range got {
				if !near(got[j], wantScores[j]) {
					t.Fatalf("score %d: %g, want %g", j, got[j], wantScores[j])
				}
			}
			for c := range mix {
				if !near(mix[c], wantMix[c]) {
					t.Fatalf("mix %d: %g, want %g", c, mix[c], wantMix[c])
				}
			}
			f, err := s.Fork(100)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rowsOf(f.View(0, 1)), keys[:100*dim]) {
				t.Error("a fork reads other keys")
			}
			f.Release()
			if err := s.Truncate(70); err != nil { // into a cold block
				t.Fatal(err)
			}
			fill(s, 70, 80)
			v = s.View(0, 1)
			if v.Len() != 80 || v.Pos(79) != 79 || !slices.Equal(rowsOf(v)[:70*dim], keys[:70*dim]) {
				t.Errorf("after truncating into a cold block and appending: %d tokens, last at %d", v.Len(), v.Pos(v.Len()-1))
			}
			s.Release()
			if used, _ := pool.Stats(); used != 0 {
				t.Errorf("%d blocks in use after release", used)
			}
		})
	}
}

func rowsOf(v View) []float32 {
	out := make([]float32, v.Len()*dim)
	for j := range v.Len() {
		v.Key(j, out[j*dim:(j+1)*dim])
	}
	return out
}

func valuesOf(v View) []float32 {
	out := make([]float32, v.Len()*dim)
	for j := range v.Len() {
		v.Value(j, out[j*dim:(j+1)*dim])
	}
	return out
}

// near reports whether a and b agree to a relative 1e-5 (sums taken in
// another order).
func near(a, b float32) bool {
	d := float64(a - b)
	return d*d <= 1e-10*max(1, float64(a)*float64(a), float64(b)*float64(b))
}
