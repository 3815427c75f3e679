package prefix

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

// Blocks of 4 tokens, so that edges end inside blocks as often as not.
const (
	layers, heads, dim, blockTokens = 2, 2, 4, 4
)

func newPool() *kvcache.Pool {
	return kvcache.NewPool(kvcache.PoolConfig{Layers: layers, KVHeads: heads, HeadDim: dim, BlockTokens: blockTokens})
}

// vec is the key (sign 1) or value (sign −1) a test stores for token id
// at position pos of head (l, h): the id and position can be read back.
func vec(id, pos, l, h int, sign float32) []float32 {
	return []float32{sign * float32(id), float32(pos), float32(l), float32(h)}
}

// extend appends tokens[s.Next():] to s, as a forward pass would.
func extend(s *kvcache.Seq, tokens []int) *kvcache.Seq {
	from := s.Next()
	for p := from; p < len(tokens); p++ {
		for l := range layers {
			for h := range heads {
				s.Append(l, h, vec(tokens[p], p, l, h, 1), vec(tokens[p], p, l, h, -1), p)
			}
		}
	}
	s.Advance(len(tokens) - from)
	return s
}

// computed returns a fresh cache of tokens.
func computed(pool *kvcache.Pool, tokens []int) *kvcache.Seq {
	return extend(pool.NewSeq(), tokens)
}

// holds checks that s holds exactly tokens, with the keys and values that
// were computed for them.
func holds(t *testing.T, s *kvcache.Seq, tokens []int) {
	t.Helper()
	if s.Next() != len(tokens) {
		t.Fatalf("cache of %d tokens, want %d", s.Next(), len(tokens))
	}
	k := make([]float32, dim)
	for l := range layers {
		for h := range heads {
			v := s.View(l, h)
			if v.Len() != len(tokens) {
				t.Fatalf("head %d/%d holds %d tokens, want %d", l, h, v.Len(), len(tokens))
			}
			for j, id := range tokens {
				v.Key(j, k)
				if !slices.Equal(k, vec(id, j, l, h, 1)) || v.Pos(j) != j {
					t.Fatalf("head %d/%d token %d: key %v at %d, want token %d", l, h, j, k, v.Pos(j), id)
				}
				v.Value(j, k)
				if !slices.Equal(k, vec(id, j, l, h, -1)) {
					t.Fatalf("head %d/%d token %d: value %v", l, h, j, k)
				}
			}
		}
	}
}

// check verifies the tree's invariants and that every leaf holds the KV of
// exactly its prefix.
func check(t *testing.T, tr *Tree) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var got Stats
	var visit func(n *node, path []int) int
	visit = func(n *node, path []int) int {
		path = append(slices.Clip(path), n.key...)
		if n.parent != nil {
			got.Nodes++
			got.Tokens += len(n.key)
			if len(n.key) == 0 || n.depth != n.parent.depth+len(n.key) || n.parent.children[n.key[0]] != n {
				t.Fatalf("node %v: depth %d, parent depth %d, linked %v", n.key, n.depth, n.parent.depth, n.parent.children[n.key[0]] == n)
			}
			leaf := len(n.children) == 0
			if leaf != (n.seq != nil) {
				t.Fatalf("node %v: %d children, cache %v", path, len(n.children), n.seq != nil)
			}
			if leaf {
				got.Leaves++
				tr.mu.Unlock()
				holds(t, n.seq, path)
				tr.mu.Lock()
			}
			if !leaf && n.lock == 0 && len(n.children) < 2 {
				t.Fatalf("unlocked inner node %v with one child was not merged", path)
			}
		}
		locks := 0
		for first, c := range n.children {
			if c.key[0] != first {
				t.Fatalf("child %v filed under %d", c.key, first)
			}
			locks += visit(c, path)
		}
		if n.lock < locks {
			t.Fatalf("node %v: lock %d below its children's %d", path, n.lock, locks)
		}
		return n.lock
	}
	for salt, r := range tr.roots {
		if r.salt != salt || r.parent != nil || r.seq != nil {
			t.Fatalf("root of %q is malformed", salt)
		}
		visit(r, nil)
	}
	if got.Nodes != tr.stats.Nodes || got.Leaves != tr.stats.Leaves || got.Tokens != tr.stats.Tokens {
		t.Fatalf("counted %d nodes, %d leaves, %d tokens; stats say %+v", got.Nodes, got.Leaves, got.Tokens, tr.stats)
	}
}

// drained checks that, with no Match held, a flush leaves nothing behind.
func drained(t *testing.T, tr *Tree) {
	t.Helper()
	tr.Flush()
	check(t, tr)
	if st := tr.Stats(); st.Nodes != 0 || st.Leaves != 0 || st.Tokens != 0 || len(tr.roots) != 0 {
		t.Fatalf("after Flush: %+v, %d roots", st, len(tr.roots))
	}
	if used, _ := tr.Pool().Stats(); used != 0 {
		t.Fatalf("after Flush the pool has %d blocks in use", used)
	}
}

// blocks returns the blocks a cache of n tokens takes in every head.
func blocks(n int) int { return (n + blockTokens - 1) / blockTokens * layers * heads }

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inserts [][]int
		query   []int
		want    int
		nodes   int
	}{
		{"empty tree", nil, []int{1, 2, 3}, 0, 0},
		{"exact", [][]int{{1, 2, 3, 4}}, []int{1, 2, 3, 4}, 4, 1},
		{"query runs on", [][]int{{1, 2, 3}}, []int{1, 2, 3, 4, 5}, 3, 1},
		{"ends inside an edge", [][]int{{1, 2, 3, 4, 5, 6}}, []int{1, 2, 3, 9}, 3, 1},
		{"query is a prefix", [][]int{{1, 2, 3, 4, 5}}, []int{1, 2}, 2, 1},
		{"first token differs", [][]int{{1, 2}}, []int{2, 1}, 0, 1},
		{"takes the right branch", [][]int{{1, 2, 3, 4}, {1, 2, 7, 8}}, []int{1, 2, 7, 9}, 3, 3},
		{"deepest of a chain", [][]int{{1}, {1, 2}, {1, 2, 3}}, []int{1, 2, 3, 4}, 3, 1},
		{"across three levels", [][]int{{1, 2, 3, 4, 5}, {1, 2, 3, 9}, {1, 2, 8}}, []int{1, 2, 3, 9, 9}, 4, 5},
		{"one token", [][]int{{7}}, []int{7, 7}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(newPool())
			for _, ins := range tc.inserts {
				if !tr.Insert("", ins, computed(tr.Pool(), ins)) {
					t.Fatalf("Insert(%v) refused", ins)
				}
			}
			check(t, tr)
			if st := tr.Stats(); st.Nodes != tc.nodes {
				t.Errorf("%d nodes, want %d", st.Nodes, tc.nodes)
			}
			if got := tr.Match("", tc.query); got != tc.want {
				t.Errorf("Match = %d, want %d", got, tc.want)
			}
			seq, m, err := tr.Acquire("", tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if m.Tokens != tc.want {
				t.Errorf("Acquire matched %d, want %d", m.Tokens, tc.want)
			}
			holds(t, seq, tc.query[:tc.want])
			check(t, tr)
			if st := tr.Stats(); st.Requested != int64(len(tc.query)) || st.Matched != int64(tc.want) {
				t.Errorf("hit accounting %d/%d, want %d/%d", st.Matched, st.Requested, tc.want, len(tc.query))
			}
			tr.Unlock(&m)
			tr.Unlock(&m) // a second unlock does nothing
			seq.Release()
			check(t, tr)
			if st := tr.Stats(); st.Nodes != tc.nodes {
				t.Errorf("after Unlock: %d nodes, want %d", st.Nodes, tc.nodes)
			}
			drained(t, tr)
		})
	}
}

func TestSplitEdges(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		inserts               [][]int
		nodes, leaves, tokens int
	}{
		{"one sequence", [][]int{{1, 2, 3, 4, 5}}, 1, 1, 5},
		{"fork in the middle", [][]int{{1, 2, 3, 4, 5}, {1, 2, 3, 9, 9}}, 3, 2, 7},
		{"a prefix adds nothing", [][]int{{1, 2, 3, 4, 5}, {1, 2, 3}}, 1, 1, 5},
		{"an extension grows the leaf", [][]int{{1, 2, 3, 4, 5}, {1, 2, 3, 4, 5, 6, 7}}, 1, 1, 7},
		{"split of a split", [][]int{{1, 2, 3, 4, 5}, {1, 2, 3, 9, 9}, {1, 2, 8}}, 5, 3, 8},
		{"same again", [][]int{{1, 2, 3}, {1, 2, 3}}, 1, 1, 3},
		{"disjoint", [][]int{{1, 2}, {3, 4}, {5}}, 3, 3, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(newPool())
			for _, ins := range tc.inserts {
				tr.Insert("", ins, computed(tr.Pool(), ins))
				check(t, tr)
			}
			st := tr.Stats()
			if st.Nodes != tc.nodes || st.Leaves != tc.leaves || st.Tokens != tc.tokens {
				t.Errorf("%d nodes, %d leaves, %d tokens; want %d, %d, %d", st.Nodes, st.Leaves, st.Tokens, tc.nodes, tc.leaves, tc.tokens)
			}
			for _, ins := range tc.inserts {
				if got := tr.Match("", ins); got != len(ins) {
					t.Errorf("Match(%v) = %d", ins, got)
				}
			}
			drained(t, tr)
		})
	}
}

// TestAcquireSplits: a lookup that ends inside an edge splits it to lock
// exactly the prefix in use; the split heals on Unlock.
func TestAcquireSplits(t *testing.T) {
	tr := New(newPool())
	long := []int{1, 2, 3, 4, 5, 6, 7, 8, 9}
	tr.Insert("", long, computed(tr.Pool(), long))
	seq, m, err := tr.Acquire("", []int{1, 2, 3, 4, 5, 0})
	if err != nil || m.Tokens != 5 {
		t.Fatalf("matched %d, %v", m.Tokens, err)
	}
	check(t, tr)
	if st := tr.Stats(); st.Nodes != 2 {
		t.Errorf("%d nodes while locked, want 2", st.Nodes)
	}
	tr.Flush() // the tail is evicted; the locked prefix keeps its cache
	check(t, tr)
	if got := tr.Match("", long); got != 5 {
		t.Errorf("after Flush under a lock: Match = %d, want 5", got)
	}
	holds(t, seq, long[:5])
	// Tokens 0–3 fill a block both share; token 4 sits in a partly filled
	// block of each.
	if used, _ := tr.Pool().Stats(); used != blocks(4)+2*blocks(1) {
		t.Errorf("%d blocks in use, want %d: the acquired cache and the locked prefix share a block", used, blocks(4)+2*blocks(1))
	}
	tr.Unlock(&m)
	seq.Release()
	check(t, tr)
	drained(t, tr)
}

// TestSharesBlocks: a turn that extends a cached conversation shares its
// blocks by reference; nothing is copied.
func TestSharesBlocks(t *testing.T) {
	tr := New(newPool())
	turn1 := []int{1, 2, 3, 4, 5, 6, 7, 8}
	tr.Insert("", turn1, computed(tr.Pool(), turn1))
	turn2 := append(slices.Clone(turn1), 9, 9, 9, 9, 9)
	seq, m, err := tr.Acquire("", turn2)
	if err != nil || m.Tokens != len(turn1) {
		t.Fatalf("matched %d, %v", m.Tokens, err)
	}
	if used, _ := tr.Pool().Stats(); used != blocks(8) {
		t.Errorf("after Acquire: %d blocks in use, want %d (shared)", used, blocks(8))
	}
	extend(seq, turn2)
	tr.Insert("", turn2, seq)
	tr.Unlock(&m)
	check(t, tr)
	if used, _ := tr.Pool().Stats(); used != blocks(len(turn2)) {
		t.Errorf("after Insert: %d blocks in use, want %d", used, blocks(len(turn2)))
	}
	if st := tr.Stats(); st.Nodes != 1 || st.Tokens != len(turn2) {
		t.Errorf("stats %+v, want one node of %d tokens", st, len(turn2))
	}
	drained(t, tr)
}

func TestEvictionOrder(t *testing.T) {
	a, b, c := []int{1, 2, 3, 4, 5}, []int{2, 2, 2}, []int{3, 3, 3, 3, 3, 3}
	shared := [][]int{{7, 7, 7, 7, 7, 7, 1}, {7, 7, 7, 7, 7, 7, 2, 2}}
	for _, tc := range []struct {
		name    string
		inserts [][]int
		use     [][]int // looked up (and unlocked) after the inserts, in order
		want    [][]int // the order of eviction
	}{
		{"insertion order", [][]int{a, b, c}, nil, [][]int{a, b, c}},
		{"a lookup refreshes", [][]int{a, b, c}, [][]int{a}, [][]int{b, c, a}},
		{"last used goes last", [][]int{a, b, c}, [][]int{c, b, a}, [][]int{c, b, a}},
		{"a partial lookup refreshes the leaf", [][]int{a, b, c}, [][]int{{1, 2}}, [][]int{b, c, a}},
		{"leaves before their shared parent", append([][]int{a}, shared...), [][]int{shared[1]}, [][]int{a, shared[0], shared[1]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(newPool())
			for _, ins := range tc.inserts {
				tr.Insert("", ins, computed(tr.Pool(), ins))
			}
			for _, q := range tc.use {
				seq, m, _ := tr.Acquire("", q)
				seq.Release()
				tr.Unlock(&m)
			}
			for i, gone := range tc.want {
				before, _ := tr.Pool().Stats()
				freed := tr.Reclaim(1)
				check(t, tr)
				if tr.Match("", gone) == len(gone) {
					t.Fatalf("eviction %d kept %v", i, gone)
				}
				for _, kept := range tc.want[i+1:] {
					if tr.Match("", kept) != len(kept) {
						t.Fatalf("eviction %d took %v before %v", i, kept, gone)
					}
				}
				after, _ := tr.Pool().Stats()
				if freed != int64(before-after)*tr.Pool().BlockBytes() || freed <= 0 {
					t.Fatalf("Reclaim reported %d bytes; %d blocks went", freed, before-after)
				}
			}
			drained(t, tr)
		})
	}
}

// TestReclaimBytes: Reclaim stops once it has freed what was asked.
func TestReclaimBytes(t *testing.T) {
	tr := New(newPool())
	for i := range 10 {
		s := []int{100 + i, 1, 2, 3, 4, 5, 6, 7} // two blocks a head
		tr.Insert("", s, computed(tr.Pool(), s))
	}
	per := int64(blocks(8)) * tr.Pool().BlockBytes()
	if got := tr.Reclaim(per + 1); got != 2*per {
		t.Errorf("Reclaim(%d) freed %d, want %d (two sequences)", per+1, got, 2*per)
	}
	if st := tr.Stats(); st.Leaves != 8 || st.Evicted != 2 {
		t.Errorf("stats %+v", st)
	}
	drained(t, tr)
}

func TestLocksPreventEviction(t *testing.T) {
	for _, tc := range []struct {
		name   string
		insert [][]int
		lock   []int // acquired and held
		kept   int   // what Match(lock) gives after a Flush
	}{
		{"a locked leaf stays", [][]int{{1, 2, 3}, {4, 5, 6}}, []int{1, 2, 3}, 3},
		{"a locked prefix stays, the rest goes", [][]int{{1, 2, 3, 4, 5, 6}}, []int{1, 2, 3, 9}, 3},
		{"siblings of a locked inner node go", [][]int{{1, 2, 3, 4}, {1, 2, 3, 5}, {1, 2, 3, 6}}, []int{1, 2, 3}, 3},
		{"an extension stays", [][]int{{1, 2}}, []int{1, 2, 3, 4}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(newPool())
			for _, ins := range tc.insert {
				tr.Insert("", ins, computed(tr.Pool(), ins))
			}
			seq, m, err := tr.Acquire("", tc.lock)
			if err != nil {
				t.Fatal(err)
			}
			tr.Flush()
			check(t, tr)
			if got := tr.Match("", tc.lock); got != tc.kept {
				t.Errorf("after Flush under a lock: Match = %d, want %d", got, tc.kept)
			}
			if st := tr.Stats(); st.Leaves != 1 {
				t.Errorf("%d leaves left, want the locked one: %+v", st.Leaves, st)
			}
			holds(t, seq, tc.lock[:m.Tokens])
			tr.Unlock(&m)
			seq.Release()
			drained(t, tr)
		})
	}
}

func TestSaltIsolation(t *testing.T) {
	pool := newPool()
	tr := New(pool)
	doc := []int{5, 6, 7, 8, 9, 10}
	tr.Insert("tenant-a", doc, computed(pool, doc))
	for _, tc := range []struct {
		salt string
		want int
	}{{"tenant-a", 6}, {"tenant-b", 0}, {"", 0}, {"tenant-A", 0}} {
		if got := tr.Match(tc.salt, doc); got != tc.want {
			t.Errorf("Match under %q = %d, want %d", tc.salt, got, tc.want)
		}
		seq, m, err := tr.Acquire(tc.salt, doc)
		if err != nil || m.Tokens != tc.want || seq.Next() != tc.want {
			t.Errorf("Acquire under %q: %d tokens (%d), %v", tc.salt, m.Tokens, seq.Next(), err)
		}
		seq.Release()
		tr.Unlock(&m)
	}
	// The same tokens under another salt are a separate copy with their
	// own blocks, evicted on their own.
	tr.Insert("tenant-b", doc, computed(pool, doc))
	check(t, tr)
	if st := tr.Stats(); st.Nodes != 2 || st.Tokens != 12 {
		t.Errorf("two tenants: %+v", st)
	}
	if used, _ := pool.Stats(); used != 2*blocks(6) {
		t.Errorf("%d blocks, want %d", used, 2*blocks(6))
	}
	tr.Reclaim(1)
	if tr.Match("tenant-a", doc) != 0 || tr.Match("tenant-b", doc) != 6 {
		t.Errorf("evicting tenant-a's copy touched tenant-b's")
	}
	drained(t, tr)
}

// TestInsertRefuses: a compressed cache, one that does not match its
// tokens, or one from another pool is released, not cached.
func TestInsertRefuses(t *testing.T) {
	pool := newPool()
	tr := New(pool)
	toks := []int{1, 2, 3, 4, 5}
	compressed := computed(pool, toks)
	if err := compressed.Keep(0, 1, []int{0, 2, 4}); err != nil {
		t.Fatal(err)
	}
	other := computed(newPool(), toks)
	for name, c := range map[string]struct {
		tokens []int
		seq    *kvcache.Seq
	}{
		"compressed":   {toks, compressed},
		"short":        {toks, computed(pool, toks[:3])},
		"no tokens":    {nil, pool.NewSeq()},
		"another pool": {toks, other},
	} {
		if tr.Insert("", c.tokens, c.seq) {
			t.Errorf("%s: Insert accepted", name)
		}
	}
	if used, _ := pool.Stats(); used != 0 || tr.Stats().Nodes != 0 {
		t.Errorf("refused inserts left %d blocks, %d nodes", used, tr.Stats().Nodes)
	}
	if used, _ := other.Pool().Stats(); used != 0 {
		t.Errorf("the other pool has %d blocks", used)
	}
}

// TestRandomTraffic runs random conversations, lookups, locks and
// evictions over a small alphabet, checking the invariants and every
// cache's contents as it goes; at the end the pool is empty.
func TestRandomTraffic(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			pool := newPool()
			tr := New(pool)
			type held struct {
				salt   string
				tokens []int
				seq    *kvcache.Seq
				m      Match
			}
			var live []held
			seqOf := func() []int {
				s := make([]int, 1+rng.IntN(14))
				for i := range s {
					s[i] = rng.IntN(3)
				}
				return s
			}
			for step := range 400 {
				switch op := rng.IntN(10); {
				case op < 4: // a request arrives
					salt := []string{"", "x"}[rng.IntN(2)]
					toks := seqOf()
					seq, m, err := tr.Acquire(salt, toks)
					if err != nil {
						t.Fatal(err)
					}
					if want := tr.Match(salt, toks); m.Tokens != want {
						t.Fatalf("step %d: Acquire %d, Match %d", step, m.Tokens, want)
					}
					holds(t, seq, toks[:m.Tokens])
					live = append(live, held{salt, toks, seq, m})
				case op < 7 && len(live) > 0: // one finishes (and generates)
					i := rng.IntN(len(live))
					h := live[i]
					live = slices.Delete(live, i, i+1)
					gen := seqOf()
					all := append(slices.Clip(h.tokens), gen[:min(len(gen), rng.IntN(3))]...)
					extend(h.seq, all)
					tr.Insert(h.salt, all, h.seq)
					tr.Unlock(&h.m)
				case op < 9:
					tr.Reclaim(int64(rng.IntN(3)) * pool.BlockBytes() * blockTokens)
				default:
					if len(live) > 0 { // one is cancelled
						i := rng.IntN(len(live))
						live[i].seq.Release()
						tr.Unlock(&live[i].m)
						live = slices.Delete(live, i, i+1)
					}
				}
				check(t, tr)
			}
			for _, h := range live {
				h.seq.Release()
				tr.Unlock(&h.m)
			}
			st := tr.Stats()
			if st.Requested == 0 || st.Matched == 0 || st.Evicted == 0 || st.HitRate() <= 0 || st.HitRate() > 1 {
				t.Errorf("traffic stats %+v", st)
			}
			drained(t, tr)
		})
	}
}
