// Package kvcache holds the keys and values that attention reads back, in
// fixed-size blocks drawn from a pool with a memory budget.
//
// Every layer of a sequence keeps, for each KV head (never per query head:
// grouped-query attention stays grouped), its own list of blocks, so
// different heads may keep different tokens and different counts. Blocks
// are reference-counted: sequences that share a prefix share its blocks,
// and a block is copied only when one of them writes into it. Dropping
// tokens (eviction) or sequences returns blocks to the pool at once.
package kvcache

import (
	"errors"
	"fmt"
	"sync"
)

// DefaultBlockTokens is the number of tokens a block holds unless the pool
// is configured otherwise; 32 matches KIVI's quantization groups.
const DefaultBlockTokens = 32

// ErrBudget is returned when the pool's memory budget cannot hold more.
var ErrBudget = errors.New("kvcache: memory budget exhausted")

// PoolConfig shapes a pool.
type PoolConfig struct {
	Layers, KVHeads, HeadDim int
	// BlockTokens is the tokens per block (DefaultBlockTokens if 0).
	BlockTokens int
	// Budget bounds the bytes of allocated blocks; 0 means no bound.
	Budget int64
	// Format is how blocks store keys and values.
	Format Format
}

// Pool hands out blocks and counts their bytes. It is safe for concurrent
// use.
type Pool struct {
	cfg        PoolConfig
	blockBytes int64

	mu    sync.Mutex
	free  []*block // full-precision blocks only
	inUse int      // blocks handed out
	// used is the bytes the blocks handed out hold: BlockBytes each, less
	// for blocks Seq.Quantize has sealed (KIVI, arXiv:2402.02750).
	used int64
	// peak is the high-water mark of used since the pool was made or
	// ResetPeak last ran.
	peak int64
}

// block is BlockTokens tokens of one layer × KV head.
type block struct {
	k, v rows
	pos  []int32
	n    int // tokens filled
	refs int // sequences (or other holders) using it; guarded by Pool.mu
	// bias, when set, is added to each token's attention score: a
	// synthetic token that stands for m tokens (RazorAttention's
	// compensation token) holds ln m, so that softmax weighs it as m.
	bias []float32
}

// NewPool returns a pool for a model of the given shape.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.BlockTokens <= 0 {
		cfg.BlockTokens = DefaultBlockTokens
	}
	vals := int64(cfg.BlockTokens * cfg.HeadDim)
	return &Pool{cfg: cfg, blockBytes: 2*vals*int64(cfg.Format.bytesPerValue()) + int64(cfg.BlockTokens)*4}
}

// Config returns the pool's configuration.
func (p *Pool) Config() PoolConfig { return p.cfg }

// BlockBytes returns the bytes one block takes: keys, values and positions.
func (p *Pool) BlockBytes() int64 { return p.blockBytes }

// Stats reports the blocks handed out and, under a budget, the blocks still
// available (−1 without a budget).
func (p *Pool) Stats() (used, available int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse, p.availableLocked()
}

// UsedBytes returns the bytes of all blocks handed out, as stored: a
// block sealed by Seq.Quantize counts its codes, scales and zeros.
func (p *Pool) UsedBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// PeakBytes returns the most bytes the pool's blocks held at once since it
// was made or ResetPeak last ran: the high-water mark that decides whether
// a prompt fits, where UsedBytes is the level at rest.
func (p *Pool) PeakBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// ResetPeak starts a new high-water mark from the bytes held now.
func (p *Pool) ResetPeak() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.peak = p.used
}

func (p *Pool) availableLocked() int {
	if p.cfg.Budget <= 0 {
		return -1
	}
	return max(0, int((p.cfg.Budget-p.used)/p.blockBytes))
}

// fits returns ErrBudget (wrapped) when n more blocks would exceed the
// budget.
func (p *Pool) fits(n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fitsLocked(n)
}

func (p *Pool) fitsLocked(n int) error {
	if avail := p.availableLocked(); avail >= 0 && n > avail {
		return fmt.Errorf("%w: need %d blocks of %d bytes, %d free", ErrBudget, n, p.blockBytes, avail)
	}
	return nil
}

// alloc hands out n blocks, or none and ErrBudget when the budget would be
// exceeded (unless force).
func (p *Pool) alloc(n int, force bool) ([]*block, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !force {
		if err := p.fitsLocked(n); err != nil {
			return nil, err
		}
	}
	out := make([]*block, n)
	for i := range out {
		var b *block
		if k := len(p.free); k > 0 {
			b, p.free = p.free[k-1], p.free[:k-1]
			b.bias = nil
		} else {
			vals := p.cfg.BlockTokens * p.cfg.HeadDim
			b = &block{k: newRows(p.cfg.Format, vals), v: newRows(p.cfg.Format, vals), pos: make([]int32, p.cfg.BlockTokens)}
		}
		b.n, b.refs = 0, 1
		out[i] = b
	}
	p.inUse += n
	p.used += int64(n) * p.blockBytes
	p.peak = max(p.peak, p.used)
	return out, nil
}

// retain adds a reference to each block.
func (p *Pool) retain(bs []*block) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range bs {
		b.refs++
	}
}

// release drops a reference to each block; unreferenced blocks go back to
// the free list.
func (p *Pool) release(bs []*block) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range bs {
		b.refs--
		if b.refs == 0 {
			p.inUse--
			p.used -= b.bytes()
			if b.k.q == nil && b.v.q == nil && b.k.x == nil && b.v.x == nil { // sealed blocks are not reused: the GC takes them
				p.free = append(p.free, b)
			}
		} else if b.refs < 0 {
			panic("kvcache: block released twice")
		}
	}
}

// setBias sets token i's score bias in b, a block in use, counting the
// bias array's bytes the first time.
func (p *Pool) setBias(b *block, i int, w float32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.bias == nil {
		if w == 0 {
			return
		}
		b.bias = make([]float32, p.cfg.BlockTokens)
		p.used += 4 * int64(p.cfg.BlockTokens)
		p.peak = max(p.peak, p.used)
	}
	b.bias[i] = w
}

// copyBias gives token i of dst the score bias of token j of src.
func (p *Pool) copyBias(dst *block, i int, src *block, j int) {
	var w float32
	if src.bias != nil {
		w = src.bias[j]
	}
	p.setBias(dst, i, w)
}

// Kept returns how many released blocks the pool keeps for reuse (what
// Trim would hand back).
func (p *Pool) Kept() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Trim hands the blocks on the free list — released, kept for reuse —
// to the Go heap, so that the garbage collector can return their memory,
// and reports their bytes. The pool allocates afresh afterwards.
func (p *Pool) Trim() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := int64(len(p.free)) * p.blockBytes
	clear(p.free)
	p.free = nil
	return n
}

// shared reports whether b has other holders.
func (p *Pool) shared(b *block) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return b.refs > 1
}
