package engine

import (
	"github.com/kvserve/kvserve/kvcache"
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

// Acquire returns an empty sequence.
func (p *PoolCache) Acquire(prompt []int) (*kvcache.Seq, error) { return p.pool.NewSeq(), nil }

// Fork returns a sequence sharing the first n tokens of src.
func (p *PoolCache) Fork(src *kvcache.Seq, n int) (*kvcache.Seq, error) { return src.Fork(n) }

// Release returns the sequence's blocks to the pool.
func (p *PoolCache) Release(s *kvcache.Seq, tokens []int) { s.Release() }

// SeqBytes returns the bytes of the blocks n tokens fill in every head.
func (p *PoolCache) SeqBytes(n int) int64 {
	cfg := p.pool.Config()
	blocks := (n + cfg.BlockTokens - 1) / cfg.BlockTokens
	return int64(blocks) * int64(cfg.Layers*cfg.KVHeads) * p.pool.BlockBytes()
}

// Stats reports the pool's blocks and bytes.
func (p *PoolCache) Stats() CacheStats {
	used, free := p.pool.Stats()
	return CacheStats{
		UsedBytes:  int64(used) * p.pool.BlockBytes(),
		Capacity:   p.pool.Config().Budget,
		UsedBlocks: used,
		FreeBlocks: free,
	}
}
