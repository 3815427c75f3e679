package chunk

import (
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

func filled(t *testing.T, pool *kvcache.Pool, start, n int, val float32) *kvcache.Seq {
	t.Helper()
	cfg := pool.Config()
	s := pool.NewSeq()
	k := make([]float32, cfg.HeadDim)
	for i := range k {
		k[i] = val
	}
	for l := range cfg.Layers {
		for g := range cfg.KVHeads {
			for p := start; p < start+n; p++ {
				s.Append(l, g, k, k, p)
			}
		}
	}
	s.Advance(start + n)
	return s
}

func TestCache(t *testing.T) {
	pool := kvcache.NewPool(kvcache.PoolConfig{Layers: 2, KVHeads: 2, HeadDim: 4, BlockTokens: 4})
	c := New(pool)
	docA, docB := []int{1, 2, 3, 4, 5}, []int{9, 8, 7}
	keyA := NewKey("m", kvcache.F32, nil, docA)
	keyB := NewKey("m", kvcache.F32, nil, docB)
	tests := []struct {
		name string
		key  Key
		same bool
	}{
		{"other context", NewKey("m", kvcache.F32, []int{1}, docA), false},
		{"other model", NewKey("n", kvcache.F32, nil, docA), false},
		{"other format", NewKey("m", kvcache.BF16, nil, docA), false},
		{"same", NewKey("m", kvcache.F32, nil, []int{1, 2, 3, 4, 5}), true},
	}
	for _, tc := range tests {
		if got := tc.key == keyA; got != tc.same {
			t.Errorf("%s: key equal = %v, want %v", tc.name, got, tc.same)
		}
	}
	if err := c.Put("alice", keyA, Entry{Seq: filled(t, pool, 0, len(docA), 1), Tokens: docA}); err != nil {
		t.Fatal(err)
	}
	if err := c.Put("alice", keyB, Entry{Seq: filled(t, pool, 0, len(docB), 2), Tokens: docB}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("bob", keyA); ok {
		t.Fatal("another tenant found alice's chunk")
	}
	if c.Contains("bob", keyA) || !c.Contains("alice", keyA) {
		t.Fatal("Contains ignores the salt")
	}
	e, ok := c.Get("alice", keyA)
	if !ok || e.Seq.Len(1, 1) != len(docA) {
		t.Fatalf("hit = %v, tokens %d", ok, e.Seq.Len(1, 1))
	}
	// B is now the least recently used: it goes first.
	if freed := c.Reclaim(1); freed <= 0 {
		t.Fatalf("Reclaim freed %d bytes", freed)
	}
	if c.Contains("alice", keyB) || !c.Contains("alice", keyA) {
		t.Fatal("Reclaim did not evict the least recently used chunk")
	}
	c.Flush()
	// The sequence from Get keeps its blocks after eviction.
	k := make([]float32, 4)
	e.Seq.View(1, 1).Key(4, k)
	if k[0] != 1 {
		t.Fatalf("key after eviction = %v", k)
	}
	e.Seq.Release()
	if used, _ := pool.Stats(); used != 0 {
		t.Fatalf("%d blocks still in use", used)
	}
	s := c.Stats()
	if s.Hits != 1 || s.Misses != 1 || s.Evicted != 2 || s.Entries != 0 {
		t.Fatalf("stats %+v", s)
	}
}
