package press

import (
	"math"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

func TestSlerpShared(t *testing.T) {
	deg := func(a float64) float64 { return a * math.Pi / 180 }
	cases := []struct {
		name  string
		a, b  []float32
		t     float64
		row   []float32
		scale float32
	}{
		{"parallel: exact", []float32{1, 0}, []float32{3, 0}, 0.6, []float32{1, 0}, 3},
		{"orthogonal, t 0.6: 54° from a", []float32{2, 0}, []float32{0, 1}, 0.6,
			[]float32{float32(2 * math.Cos(deg(54))), float32(2 * math.Sin(deg(54)))}, 0.5},
		{"orthogonal, t 0.5: halfway", []float32{0, 4}, []float32{4, 0}, 0.5,
			[]float32{float32(4 * math.Sin(deg(45))), float32(4 * math.Cos(deg(45)))}, 1},
		{"opposite at t 0.5: a's direction", []float32{1, 0}, []float32{-2, 0}, 0.5, []float32{1, 0}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			row, scale := slerpShared(c.a, c.b, c.t)
			if !mgClose(row, c.row) || math.Abs(float64(scale-c.scale)) > 1e-6 {
				t.Fatalf("row %v scale %v, want %v and %v", row, scale, c.row, c.scale)
			}
		})
	}
}

// polar returns the 2-d unit vector at the given angle in degrees.
func polar(deg float64) []float32 {
	r := deg * math.Pi / 180
	return []float32{float32(math.Cos(r)), float32(math.Sin(r))}
}

func TestMiniCacheChooseMerged(t *testing.T) {
	// Five tokens; layer b is layer a rotated by (key°, value°):
	// t0 (0, 10) → 10°, t1 (50, 0) → 50°, t2 (5, 5) → 5°, t3 zero key in
	// layer b (never merged), t4 (20, 20) → 20°.
	turns := [][2]float64{{0, 10}, {50, 0}, {5, 5}, {0, 0}, {20, 20}}
	var ka, kb, xa, xb []float32
	for j, tr := range turns {
		ka, xa = append(ka, polar(0)...), append(xa, polar(90)...)
		kb, xb = append(kb, polar(tr[0])...), append(xb, polar(90+tr[1])...)
		if j == 3 {
			kb[2*j], kb[2*j+1] = 0, 0
		}
	}
	cases := []struct {
		ratio float64
		want  []bool
	}{
		{0.4, []bool{true, false, true, false, false}},
		{0.8, []bool{true, true, true, false, true}},
		{0.99, []bool{true, true, true, false, true}},
		{0.1, nil},
	}
	for _, c := range cases {
		got := MiniCache{T: 0.6}.chooseMerged(ka, kb, xa, xb, 5, 2, c.ratio)
		if len(got) != len(c.want) {
			t.Fatalf("ratio %v: merges %v, want %v", c.ratio, got, c.want)
		}
		for j := range got {
			if got[j] != c.want[j] {
				t.Fatalf("ratio %v: merges %v, want %v", c.ratio, got, c.want)
			}
		}
	}
}

// TestMiniCacheOnASeq merges layers 2 and 3 of a four-layer cache: tokens
// 0–4 of layer 3 are layer 2's vectors scaled (so merging them is exact),
// token 5 is turned by 90°.
func TestMiniCacheOnASeq(t *testing.T) {
	const n, d = 6, 2
	pool := kvcache.NewPool(kvcache.PoolConfig{Layers: 4, KVHeads: 1, HeadDim: d, BlockTokens: 4})
	seq := pool.NewSeq()
	defer seq.Release()
	key := func(l, j int) []float32 {
		k := polar(float64(30 * j))
		if l == 3 {
			if j == 5 {
				k = polar(float64(30*j + 90))
			}
			return []float32{k[0] * float32(j+2), k[1] * float32(j+2)}
		}
		return []float32{k[0] * float32(l+1), k[1] * float32(l+1)}
	}
	val := func(l, j int) []float32 { k := key(l, j); return []float32{-k[1], k[0]} }
	for j := range n {
		for l := range 4 {
			seq.Append(l, 0, key(l, j), val(l, j), j)
		}
	}
	seq.Advance(n)
	full := seq.StoredBytes()
	mc := MiniCache{T: 0.6, Start: 0.5}
	if got := mc.Pairs(4); len(got) != 1 || got[0] != [2]int{2, 3} {
		t.Fatalf("pairs %v, want [[2 3]]", got)
	}
	// ⌊0.75·6⌋ = 4 merged: the first four of the five parallel tokens
	// (distance 0); t4 and t5 are retained.
	if err := mc.mergeHead(seq, 2, 3, 0, 0.75); err != nil {
		t.Fatal(err)
	}
	from, m, ok := seq.SharesFrom(3, 0)
	if !ok || from != 2 || m != n {
		t.Fatalf("layer 3 shares %d tokens of layer %d (%v), want 6 of layer 2", m, from, ok)
	}
	bb := pool.BlockBytes()
	want := full - 2*bb + 4*2*n + 2*(4+2*d*4) // layer 3's two blocks → scales, two retained tokens
	if got := seq.StoredBytes(); got != want {
		t.Fatalf("StoredBytes %d, want %d (full %d)", got, want, full)
	}
	if got := pool.UsedBytes(); got != want {
		t.Fatalf("pool holds %d bytes, want %d", got, want)
	}
	buf := make([]float32, d)
	for _, l := range []int{2, 3} {
		v := seq.View(l, 0)
		for j := range n {
			v.Key(j, buf)
			if !mgClose(buf, key(l, j)) {
				t.Fatalf("layer %d token %d key %v, want %v", l, j, buf, key(l, j))
			}
			v.Value(j, buf)
			if !mgClose(buf, val(l, j)) {
				t.Fatalf("layer %d token %d value %v, want %v", l, j, buf, val(l, j))
			}
		}
	}
	// Again: the pair already shares, nothing changes.
	if err := mc.mergeHead(seq, 2, 3, 0, 0.75); err != nil || seq.StoredBytes() != want {
		t.Fatalf("a second merge: %v, %d bytes", err, seq.StoredBytes())
	}
}

func TestMiniCacheKeepsNorms(t *testing.T) {
	// Two layers at 40° apart, twice: ⌊0.99·2⌋ = 1 merges, the first. Each
	// layer keeps its own length and both read one direction, 0.6·40° = 24°
	// from layer 0's; the second token is retained and reads as it was.
	pool := kvcache.NewPool(kvcache.PoolConfig{Layers: 2, KVHeads: 1, HeadDim: 2, BlockTokens: 4})
	seq := pool.NewSeq()
	defer seq.Release()
	b := polar(40)
	for j := range 2 {
		seq.Append(0, 0, []float32{3, 0}, []float32{0, 1}, j)
		seq.Append(1, 0, []float32{b[0] / 2, b[1] / 2}, []float32{0, 5}, j)
	}
	seq.Advance(2)
	if err := (MiniCache{T: 0.6}).mergeHead(seq, 0, 1, 0, 0.99); err != nil {
		t.Fatal(err)
	}
	e := polar(24)
	cases := []struct {
		layer, token int
		key, value   []float32
	}{
		{0, 0, []float32{3 * e[0], 3 * e[1]}, []float32{0, 1}},
		{1, 0, []float32{e[0] / 2, e[1] / 2}, []float32{0, 5}},
		{0, 1, []float32{3, 0}, []float32{0, 1}},
		{1, 1, []float32{b[0] / 2, b[1] / 2}, []float32{0, 5}},
	}
	k, v := make([]float32, 2), make([]float32, 2)
	for _, c := range cases {
		view := seq.View(c.layer, 0)
		view.Key(c.token, k)
		view.Value(c.token, v)
		if !mgClose(k, c.key) || !mgClose(v, c.value) {
			t.Fatalf("layer %d token %d reads %v / %v, want %v / %v", c.layer, c.token, k, v, c.key, c.value)
		}
	}
}
