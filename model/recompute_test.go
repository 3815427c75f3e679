package model

import (
	"github.com/kvserve/kvserve/kvcache"
	"slices"
	"testing"
)

// TestForwardRecompute checks the recompute entry point against a plain
// forward pass: recomputing every token over a cache of placeholders gives
// the same logits and the same cache; recomputing only a suffix over a
// cache whose prefix is right gives them too; and narrowing to the last
// token from layer 0 on reads the cached keys of the others.
func TestForwardRecompute(t *testing.T) {
	m := loadDir(t, "../models/tinychat")
	tokens := make([]int, 90)
	for i := range tokens {
		tokens[i] = (i*37 + 11) % m.Config.VocabSize
	}
	ref := m.NewCache()
	want, err := m.Forward(ref, tokens, LastLogits)
	if err != nil {
		t.Fatal(err)
	}
	want = slices.Clone(want)

	placeholders := func(prefix int) *cacheWithPrefix {
		c := m.NewCache()
		if prefix > 0 {
			if _, err := m.Forward(c, tokens[:prefix], NoLogits); err != nil {
				t.Fatal(err)
			}
		}
		zero := make([]float32, m.Config.HeadDim)
		for li := range m.Config.Layers {
			for g := range m.Config.KVHeads {
				for p := prefix; p < len(tokens); p++ {
					c.Append(li, g, zero, zero, p)
				}
			}
		}
		c.Advance(len(tokens) - prefix)
		return &cacheWithPrefix{c, prefix}
	}
	span := func(from int) []int {
		var a []int
		for j := from; j < len(tokens); j++ {
			a = append(a, j)
		}
		return a
	}
	for _, tc := range []struct {
		name   string
		prefix int
		active []int
	}{
		{"all tokens over placeholders", 0, span(0)},
		{"suffix over a right prefix", 60, span(60)},
		{"a suffix and some cached tokens", 60, append([]int{3, 17, 40}, span(60)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := placeholders(tc.prefix)
			got, err := m.ForwardRecompute(c.Seq, tokens, tc.active, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(got, want); d > 1e-3 {
				t.Fatalf("logits differ from a plain forward pass by %g", d)
			}
			k1, k2 := make([]float32, m.Config.HeadDim), make([]float32, m.Config.HeadDim)
			for li := range m.Config.Layers {
				for g := range m.Config.KVHeads {
					for j := range tokens {
						ref.View(li, g).Key(j, k1)
						c.View(li, g).Key(j, k2)
						if d := maxAbsDiff(k1, k2); d > 1e-3 {
							t.Fatalf("layer %d head %d token %d: key differs by %g", li, g, j, d)
						}
					}
				}
			}
		})
	}
	t.Run("narrowed to the last token", func(t *testing.T) {
		c := placeholders(len(tokens) - 1)
		calls := 0
		got, err := m.ForwardRecompute(c.Seq, tokens, span(len(tokens)-5), func(layer int, pos []int, k, v []float32) []int {
			calls++
			if layer == 0 && len(pos) != 5 {
				t.Errorf("layer 0 computes %d tokens, want 5", len(pos))
			}
			return nil // only the last token goes on
		})
		if err != nil {
			t.Fatal(err)
		}
		if calls != m.Config.Layers {
			t.Fatalf("selector called %d times, want %d", calls, m.Config.Layers)
		}
		if d := maxAbsDiff(got, want); d > 1e-3 {
			t.Fatalf("logits differ by %g", d)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		c := placeholders(0)
		for _, active := range [][]int{nil, {0, 5}, {5, 3, 89}, {-1, 89}} {
			if _, err := m.ForwardRecompute(c.Seq, tokens, active, nil); err == nil {
				t.Errorf("active %v: no error", active)
			}
		}
		if _, err := m.ForwardRecompute(c.Seq, tokens[:10], []int{9}, nil); err == nil {
			t.Error("prompt shorter than the cache: no error")
		}
	})
}

type cacheWithPrefix struct {
	*kvcache.Seq
	prefix int
}

// TestForwardRecomputeObserved checks the queries a recompute pass records
// against those a plain forward pass records for the same tokens, from
// several first positions, and that a narrowed layer records only the
// tokens kept.
func TestForwardRecomputeObserved(t *testing.T) {
	m := loadDir(t, "../models/tinychat")
	tokens := make([]int, 40)
	for i := range tokens {
		tokens[i] = (i*53 + 7) % m.Config.VocabSize
	}
	qd := m.Config.Heads * m.Config.HeadDim
	for _, tc := range []struct {
		name string
		from int
	}{
		{"every token", 0},
		{"a suffix", 31},
		{"the last token", 39},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := &Observer{From: tc.from}
			if _, err := m.ForwardObserved(m.NewCache(), tokens, NoLogits, want); err != nil {
				t.Fatal(err)
			}
			c := m.NewCache()
			zero := make([]float32, m.Config.HeadDim)
			for li := range m.Config.Layers {
				for g := range m.Config.KVHeads {
					for p := range tokens {
						c.Append(li, g, zero, zero, p)
					}
				}
			}
			c.Advance(len(tokens))
			active := make([]int, len(tokens))
			for i := range active {
				active[i] = i
			}
			got := &Observer{From: tc.from}
			if _, err := m.ForwardRecomputeObserved(c, tokens, active, nil, got); err != nil {
				t.Fatal(err)
			}
			for li := range m.Config.Layers {
				if len(got.Queries[li]) != (len(tokens)-tc.from)*qd {
					t.Fatalf("layer %d: %d query floats, want %d", li, len(got.Queries[li]), (len(tokens)-tc.from)*qd)
				}
				if d := maxAbsDiff(got.Queries[li], want.Queries[li]); d > 1e-3 {
					t.Fatalf("layer %d: queries differ from a plain forward pass by %g", li, d)
				}
			}
		})
	}
	t.Run("narrowed to the last token from layer 2", func(t *testing.T) {
		c := m.NewCache()
		if _, err := m.Forward(c, tokens[:30], NoLogits); err != nil {
			t.Fatal(err)
		}
		zero := make([]float32, m.Config.HeadDim)
		for li := range m.Config.Layers {
			for g := range m.Config.KVHeads {
				for p := 30; p < len(tokens); p++ {
					c.Append(li, g, zero, zero, p)
				}
			}
		}
		c.Advance(10)
		active := []int{30, 31, 32, 33, 34, 35, 36, 37, 38, 39}
		obs := &Observer{From: 35}
		sel := func(layer int, pos []int, _, _ []float32) []int {
			if layer >= 2 {
				return []int{len(pos) - 1}
			}
			out := make([]int, len(pos))
			for i := range out {
				out[i] = i
			}
			return out
		}
		if _, err := m.ForwardRecomputeObserved(c, tokens, active, sel, obs); err != nil {
			t.Fatal(err)
		}
		for li := range m.Config.Layers {
			want := 5 * qd
			if li >= 2 {
				want = qd
			}
			if len(obs.Queries[li]) != want {
				t.Errorf("layer %d: %d query floats, want %d", li, len(obs.Queries[li]), want)
			}
		}
	})
}
