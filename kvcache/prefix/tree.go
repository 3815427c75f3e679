// Package prefix keeps the KV caches of finished sequences in a radix tree
// over token ids, so that a new sequence that starts the way an earlier one
// did — the next turn of a conversation, a shared system prompt, a few-shot
// preamble — reuses that prefix's keys and values by reference instead of
// computing them again. It is SGLang's RadixAttention cache on kvcache's
// paged, reference-counted blocks.
//
// # The tree
//
// Each edge carries a run of token ids, and a node stands for the prefix
// spelled by the edges from its root down to it. Edges are token-granular:
// two sequences share exactly their common prefix, wherever it ends, and an
// edge is split where a new sequence leaves it.
//
// Only leaves hold a cache: a kvcache.Seq of exactly the leaf's prefix. An
// inner node needs none, because every leaf below it holds its prefix too;
// a lookup that ends at an inner node forks a leaf below it, cut to the
// match. Caches of a path share their full blocks by reference (forks of
// one another), so the tree costs what its distinct tokens cost, plus at
// most one partly filled block per leaf and head.
//
// # Tenants
//
// Every salt has its own root. A lookup under one salt never walks another
// salt's tree, so no tenant can match, or time, another's tokens: isolation
// holds by construction, not by the luck of a hash.
//
// # Locks and eviction
//
// Acquire locks the node where its match ends, and with it every node up to
// the root, until Unlock. Reclaim evicts unlocked leaves, least recently
// used first; a parent left without children takes over the evicted leaf's
// cache, cut to its own prefix, and may go next. A sequence that forked a
// leaf keeps its blocks when the leaf goes: eviction frees only the blocks
// that nothing else holds.
package prefix

import (
	"container/heap"
	"math"
	"slices"
	"sync"

	"github.com/kvserve/kvserve/kvcache"
)

// Tree is a radix tree of cached prefixes over one pool. It is safe for
// concurrent use.
type Tree struct {
	pool *kvcache.Pool

	mu    sync.Mutex
	roots map[string]*node // one per salt
	clock uint64           // ticks at every Acquire and Insert, for LRU
	stats Stats
}

// node is one edge of the tree and the prefix that ends with it.
type node struct {
	parent   *node         // nil for a root
	children map[int]*node // by the first token of the child's edge
	key      []int         // the edge's tokens; empty for a root
	depth    int           // tokens from the root to the end of key
	seq      *kvcache.Seq  // a leaf's cache of depth tokens; nil elsewhere
	lock     int           // Matches held at this node or below it
	used     uint64        // the clock when a lookup or insert last passed
	salt     string        // a root's salt
}

// Match is a prefix found by Tree.Acquire. It keeps the prefix's nodes from
// eviction until Tree.Unlock.
type Match struct {
	// Tokens is the length of the prefix found.
	Tokens int
	node   *node
}

// Stats describes a tree and counts its traffic.
type Stats struct {
	Nodes  int // nodes below the roots
	Leaves int // nodes holding a cache
	Tokens int // tokens on all edges: the distinct prefix tokens cached
	// Totals since the tree was made.
	Requested int64 // tokens looked up by Acquire
	Matched   int64 // of which were found cached
	Inserted  int64 // tokens that Insert added to the tree
	Evicted   int64 // leaves evicted
}

// HitRate returns the share of the tokens looked up that were found cached.
func (s Stats) HitRate() float64 {
	if s.Requested == 0 {
		return 0
	}
	return float64(s.Matched) / float64(s.Requested)
}

// New returns an empty tree whose caches come from pool.
func New(pool *kvcache.Pool) *Tree {
	return &Tree{pool: pool, roots: map[string]*node{}}
}

// Pool returns the pool the tree's caches draw from.
func (t *Tree) Pool() *kvcache.Pool { return t.pool }

// Stats returns the tree's size and traffic.
func (t *Tree) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// walk follows tokens down from n as far as the edges agree. It returns
// the last node entered and the number of tokens matched; when the match
// ends inside that node's edge, the node's depth is larger than the count.
func walk(n *node, tokens []int) (*node, int) {
	matched := 0
	for matched < len(tokens) {
		c := n.children[tokens[matched]]
		if c == nil {
			break
		}
		k := 1 // the first token matched: it is the child's key in the map
		for k < len(c.key) && matched+k < len(tokens) && c.key[k] == tokens[matched+k] {
			k++
		}
		n, matched = c, matched+k
		if k < len(c.key) {
			break
		}
	}
	return n, matched
}

// Match returns the length of the longest prefix of tokens cached under
// salt. It changes nothing — no lock, no recency, no counts — so a
// scheduler may ask it of every waiting request.
func (t *Tree) Match(salt string, tokens []int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	root := t.roots[salt]
	if root == nil {
		return 0
	}
	_, m := walk(root, tokens)
	return m
}

// Acquire finds the longest prefix of tokens cached under salt and returns
// a new sequence holding it, sharing the tree's blocks by reference (only a
// partly filled last block is copied), and the Match that keeps the prefix
// from eviction until Unlock. With nothing cached it returns an empty
// sequence and a Match of 0 tokens. Either way the caller owns the
// sequence.
func (t *Tree) Acquire(salt string, tokens []int) (*kvcache.Seq, Match, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Requested += int64(len(tokens))
	root := t.roots[salt]
	if root == nil {
		return t.pool.NewSeq(), Match{}, nil
	}
	n, m := walk(root, tokens)
	if m == 0 {
		return t.pool.NewSeq(), Match{}, nil
	}
	if m < n.depth { // the match ends inside n's edge: give it a node
		n = t.split(n, len(n.key)-(n.depth-m))
	}
	leaf := n
	for leaf.seq == nil { // any leaf below holds the prefix; take the freshest
		var next *node
		for _, c := range leaf.children {
			if next == nil || c.used > next.used {
				next = c
			}
		}
		leaf = next
	}
	seq, err := leaf.seq.Fork(m)
	if err != nil {
		return nil, Match{}, err
	}
	for x := n; x != nil; x = x.parent {
		x.lock++
	}
	t.touch(n)
	t.stats.Matched += int64(m)
	return seq, Match{Tokens: m, node: n}, nil
}

// Unlock releases a Match from Acquire, so that its prefix may be evicted
// again. It clears m; unlocking a cleared or empty Match does nothing.
func (t *Tree) Unlock(m *Match) {
	if m.node == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for x := m.node; x != nil; x = x.parent {
		if x.lock--; x.lock < 0 {
			panic("prefix: node unlocked more often than locked")
		}
	}
	for x := m.node; x.parent != nil; {
		p := x.parent
		t.tidy(x)
		x = p
	}
	*m = Match{}
}

// Insert hands seq, the cache of tokens, to the tree under salt; the caller
// must not use seq afterwards. The tokens the tree already holds stay as
// they are; the rest become a new leaf that owns seq. If nothing is new,
// or seq cannot be shared — it does not hold every one of tokens in every
// head (a compressed cache), or it comes from another pool — seq is
// released, and Insert reports whether the tree now holds tokens.
func (t *Tree) Insert(salt string, tokens []int, seq *kvcache.Seq) bool {
	if len(tokens) == 0 || !complete(seq, len(tokens)) || seq.Pool() != t.pool {
		seq.Release()
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	root := t.roots[salt]
	if root == nil {
		root = &node{children: map[int]*node{}, salt: salt}
		t.roots[salt] = root
	}
	n, m := walk(root, tokens)
	if m == len(tokens) { // all cached already
		t.touch(n)
		seq.Release()
		return true
	}
	if m < n.depth {
		n = t.split(n, len(n.key)-(n.depth-m))
	}
	leaf := &node{parent: n, key: slices.Clone(tokens[m:]), depth: len(tokens), seq: seq}
	if n.children == nil {
		n.children = map[int]*node{}
	}
	n.children[leaf.key[0]] = leaf
	t.stats.Nodes++
	t.stats.Tokens += len(leaf.key)
	t.stats.Inserted += int64(len(leaf.key))
	if n.seq != nil { // n was a leaf: the new leaf holds its prefix now
		n.seq.Release()
		n.seq = nil
	} else {
		t.stats.Leaves++
	}
	t.touch(leaf)
	t.tidy(n)
	return true
}

// complete reports whether seq holds positions 0 … n−1 in every head.
func complete(seq *kvcache.Seq, n int) bool {
	if seq.Next() != n {
		return false
	}
	for l := range seq.Layers() {
		for h := range seq.KVHeads() {
			if seq.Len(l, h) != n {
				return false
			}
		}
	}
	return true
}

// Reclaim evicts unlocked leaves, least recently used first, until the
// pool's bytes in use have dropped by at least bytes or nothing more can
// go, and returns the bytes freed. Only blocks that nothing else holds are
// freed: a sequence that forked an evicted leaf keeps its blocks.
func (t *Tree) Reclaim(bytes int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	before := t.pool.UsedBytes()
	var h lru
	var collect func(n *node)
	collect = func(n *node) {
		if n.seq != nil && n.lock == 0 {
			h = append(h, n)
		}
		for _, c := range n.children {
			collect(c)
		}
	}
	for _, r := range t.roots {
		collect(r)
	}
	heap.Init(&h)
	for h.Len() > 0 && before-t.pool.UsedBytes() < bytes {
		if p := t.evict(heap.Pop(&h).(*node)); p != nil && p.lock == 0 {
			heap.Push(&h, p)
		}
	}
	return before - t.pool.UsedBytes()
}

// Flush evicts every unlocked leaf, and the parents that become leaves, so
// that only locked prefixes stay; with no Match held the tree is left empty
// and holds no block.
func (t *Tree) Flush() { t.Reclaim(math.MaxInt64) }

// evict removes leaf l. If its parent is left without children it becomes
// a leaf holding l's cache cut to its prefix, and evict returns it.
func (t *Tree) evict(l *node) *node {
	p := l.parent
	delete(p.children, l.key[0])
	t.stats.Nodes--
	t.stats.Tokens -= len(l.key)
	t.stats.Evicted++
	seq := l.seq
	l.seq, l.parent = nil, nil
	if p.parent != nil && len(p.children) == 0 {
		seq.Truncate(p.depth) // p.depth < l.depth = seq.Next(): cannot fail
		p.seq = seq
		return p
	}
	seq.Release()
	t.stats.Leaves--
	if p.parent == nil {
		if len(p.children) == 0 && p.lock == 0 {
			delete(t.roots, p.salt)
		}
		return nil
	}
	t.tidy(p)
	return nil
}

// split cuts n's edge after k tokens (0 < k < len(n.key)): a new node
// takes the first k and becomes n's parent. n keeps its identity, cache
// and children, so Matches that point at it stay valid; the new node
// inherits n's lock count, since every lock on n passes through it.
func (t *Tree) split(n *node, k int) *node {
	m := &node{parent: n.parent, key: n.key[:k:k], depth: n.depth - len(n.key) + k, lock: n.lock, used: n.used}
	m.parent.children[m.key[0]] = m
	n.key, n.parent = n.key[k:], m
	m.children = map[int]*node{n.key[0]: n}
	t.stats.Nodes++
	return m
}

// tidy merges n into its only child when nothing needs n on its own: it
// is not a root, holds no cache and no lock. The child keeps the later of
// the two uses.
func (t *Tree) tidy(n *node) {
	if n.parent == nil || n.seq != nil || n.lock > 0 || len(n.children) != 1 {
		return
	}
	for _, c := range n.children {
		c.key = slices.Concat(n.key, c.key)
		c.parent = n.parent
		c.used = max(c.used, n.used)
		n.parent.children[c.key[0]] = c
	}
	n.parent, n.children = nil, nil
	t.stats.Nodes--
}

// touch marks the path from n up to its root as used now.
func (t *Tree) touch(n *node) {
	t.clock++
	for ; n != nil; n = n.parent {
		n.used = t.clock
	}
}

// lru is a min-heap of leaves by last use; among equals, the deeper goes
// first.
type lru []*node

func (h lru) Len() int { return len(h) }
func (h lru) Less(i, j int) bool {
	if h[i].used != h[j].used {
		return h[i].used < h[j].used
	}
	return h[i].depth > h[j].depth
}
func (h lru) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *lru) Push(x any)   { *h = append(*h, x.(*node)) }
func (h *lru) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}
