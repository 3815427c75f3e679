package engine

import (
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/prefix"
	"github.com/kvserve/kvserve/model"
)

// PoolCache is a CacheAllocator over a kvcache.Pool: sequences draw blocks
// from the pool under its budget, a fork shares the prompt's blocks by
// reference, and a release returns the blocks at once. It finds no cached
// prefix: every sequence starts empty.
type PoolCache struct {
	pool *kvcache.Pool
}

// NewPoolCache returns an allocator over a new pool shaped for net. cfg
// sets the budget, block size and format; its shape fields are filled in.
func NewPoolCache(net *model.Model, cfg kvcache.PoolConfig) *PoolCache {
	c := net.Config
	cfg.Layers, cfg.KVHeads, cfg.HeadDim = c.Layers, c.KVHeads, c.HeadDim
	return &PoolCache{pool: kvcache.NewPool(cfg)}
}

// Pool returns the pool the caches draw from.
func (p *PoolCache) Pool() *kvcache.Pool { return p.pool }

// Cached returns 0: the pool keeps nothing.
func (p *PoolCache) Cached(salt string, prompt []int) int { return 0 }

// Acquire returns an empty sequence.
func (p *PoolCache) Acquire(salt string, prompt []int) (*kvcache.Seq, error) {
	return p.pool.NewSeq(), nil
}

// Fork returns a sequence sharing the first n tokens of src.
func (p *PoolCache) Fork(src *kvcache.Seq, n int) (*kvcache.Seq, error) { return src.Fork(n) }

// Share does nothing.
func (p *PoolCache) Share(s *kvcache.Seq, salt string, tokens []int) {}

// Release returns the sequence's blocks to the pool.
func (p *PoolCache) Release(s *kvcache.Seq, salt string, tokens []int) { s.Release() }

// Reclaim frees nothing: the pool keeps nothing.
func (p *PoolCache) Reclaim(bytes int64) int64 { return 0 }

// SeqBytes returns the bytes of the blocks n tokens fill in every head.
func (p *PoolCache) SeqBytes(n int) int64 { return seqBytes(p.pool, n) }

// Stats reports the pool's blocks and bytes.
func (p *PoolCache) Stats() CacheStats { return poolStats(p.pool) }

func seqBytes(pool *kvcache.Pool, n int) int64 {
	cfg := pool.Config()
	blocks := (n + cfg.BlockTokens - 1) / cfg.BlockTokens
	return int64(blocks) * int64(cfg.Layers*cfg.KVHeads) * pool.BlockBytes()
}

func poolStats(pool *kvcache.Pool) CacheStats {
	used, free := pool.Stats()
	return CacheStats{
		UsedBytes:  int64(used) * pool.BlockBytes(),
		Capacity:   pool.Config().Budget,
		UsedBlocks: used,
		FreeBlocks: free,
	}
}

// PrefixCache is a CacheAllocator that keeps the caches of finished
// sequences — prompt and generated tokens — in a radix tree
// (kvcache/prefix), so that a prompt starting the way an earlier sequence
// of the same salt did reuses its KV by reference: the next turn of a
// conversation computes only what the turn adds. Kept caches count against
// the pool's budget and are evicted, least recently used first, when
// admission needs their room (Reclaim). Salts are tenants: a prompt never
// reuses the KV of another salt.
type PrefixCache struct {
	pool  *kvcache.Pool
	tree  *prefix.Tree
	locks map[*kvcache.Seq]prefix.Match // Acquire's matches, by the cache handed out
}

// NewPrefixCache returns a prefix-caching allocator over a new pool shaped
// for net. cfg sets the budget, block size and format; its shape fields
// are filled in.
func NewPrefixCache(net *model.Model, cfg kvcache.PoolConfig) *PrefixCache {
	c := net.Config
	cfg.Layers, cfg.KVHeads, cfg.HeadDim = c.Layers, c.KVHeads, c.HeadDim
	pool := kvcache.NewPool(cfg)
	return &PrefixCache{pool: pool, tree: prefix.New(pool), locks: map[*kvcache.Seq]prefix.Match{}}
}

// Pool returns the pool the caches draw from.
func (p *PrefixCache) Pool() *kvcache.Pool { return p.pool }

// Tree returns the radix tree of kept caches.
func (p *PrefixCache) Tree() *prefix.Tree { return p.tree }

// Cached returns how many leading tokens of prompt are kept for salt, at
// most len(prompt)−1: the last token is always computed, for its logits.
func (p *PrefixCache) Cached(salt string, prompt []int) int {
	if len(prompt) < 2 {
		return 0
	}
	return p.tree.Match(salt, prompt[:len(prompt)-1])
}

// Acquire returns a cache holding the longest kept prefix of prompt for
// salt (at most len(prompt)−1 tokens), shared by reference; the prefix
// stays locked against eviction until the cache is released.
func (p *PrefixCache) Acquire(salt string, prompt []int) (*kvcache.Seq, error) {
	seq, m, err := p.tree.Acquire(salt, prompt[:max(0, len(prompt)-1)])
	if err != nil {
		return nil, err
	}
	if m.Tokens > 0 {
		p.locks[seq] = m
	}
	return seq, nil
}

// Fork returns a sequence sharing the first n tokens of src.
func (p *PrefixCache) Fork(src *kvcache.Seq, n int) (*kvcache.Seq, error) { return src.Fork(n) }

// Share keeps a fork of s's tokens for later prompts of salt; s stays the
// caller's.
func (p *PrefixCache) Share(s *kvcache.Seq, salt string, tokens []int) {
	if len(tokens) == 0 || len(tokens) != s.Next() || p.tree.Match(salt, tokens) == len(tokens) {
		return
	}
	if f, err := s.Fork(len(tokens)); err == nil {
		p.tree.Insert(salt, tokens, f)
	}
}

// Release keeps the sequence's tokens in the tree (unless tokens is nil)
// and unlocks the prefix it was acquired with. A cache whose heads were
// compressed is not kept: it lacks tokens.
func (p *PrefixCache) Release(s *kvcache.Seq, salt string, tokens []int) {
	m, locked := p.locks[s]
	delete(p.locks, s)
	if tokens == nil {
		s.Release()
	} else {
		p.tree.Insert(salt, tokens, s)
	}
	if locked {
		p.tree.Unlock(&m)
	}
}

// Reclaim evicts kept caches that no sequence uses, least recently used
// first, until at least bytes are freed or none is left.
func (p *PrefixCache) Reclaim(bytes int64) int64 { return p.tree.Reclaim(bytes) }

// Flush drops every kept cache that no running sequence uses; once every
// sequence is released, the pool is back to empty.
func (p *PrefixCache) Flush() { p.tree.Flush() }

// SeqBytes returns the bytes of the blocks n tokens fill in every head.
func (p *PrefixCache) SeqBytes(n int) int64 { return seqBytes(p.pool, n) }

// Stats reports the pool's blocks and bytes and the tree's size.
func (p *PrefixCache) Stats() CacheStats {
	st := poolStats(p.pool)
	ts := p.tree.Stats()
	st.PrefixTokens, st.PrefixEvictions = ts.Tokens, ts.Evicted
	return st
}

// Trim implements CacheAllocator.
func (p *PoolCache) Trim() int64 { return p.pool.Trim() }

// Trim implements CacheAllocator: the blocks no sequence or kept prefix
// holds.
func (p *PrefixCache) Trim() int64 { return p.pool.Trim() }
