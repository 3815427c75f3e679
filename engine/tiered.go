package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/codec"
	"github.com/kvserve/kvserve/kvcache/store"
)

// TierConfig configures a TieredCache.
type TierConfig struct {
	// Store holds the encoded chunks (memory, disk, Redis tiers).
	Store *store.Store
	// Level is the codec level chunks are written in (cg1 if zero).
	Level codec.Level
	// ChunkTokens is the tokens per stored chunk; 256 if 0. Chunks start
	// at multiples of it, so only whole chunks of a prompt are stored and
	// loaded.
	ChunkTokens int
	// Namespace names the model and KV format in every key, so that no
	// other model or layout ever reads an entry (e.g. "tinychat-3f9a/f32").
	Namespace string
	// LoadTimeout bounds the lookups of one Acquire; 2s if 0. Past it the
	// rest of the prompt is computed.
	LoadTimeout time.Duration
	// Logger logs failures; slog.Default() if nil.
	Logger *slog.Logger
}

// TieredCache is a PrefixCache with tiers below it (kvcache/store): a
// prompt whose prefix is not in memory is looked up chunk by chunk in the
// store — memory tier, disk, Redis — and what is found is decoded into the
// pool instead of being computed; sequences that enter the prefix cache
// are written down, encoded, by the store's writer goroutine, so that a
// restarted server, or another server on the same Redis, finds them.
//
// Chunks are identified as LMCache identifies them: the key of chunk i is
// a hash chained over every token up to its end, so equal keys mean equal
// prefixes, under a namespace of model, KV format, codec level and the
// tenant's salt — tenants never read each other's entries.
//
// Writing is write-through and asynchronous: when a finished (or computed)
// sequence is handed to the prefix cache, its whole chunks not yet stored
// are forked (by reference, no copy) and queued; if the queue is full the
// work is dropped, never waited for. An eviction from memory then loses
// nothing that a later prompt could load.
type TieredCache struct {
	*PrefixCache
	cfg TierConfig
	log *slog.Logger
	// stored remembers keys this process wrote or loaded, so that they are
	// not queued again; cleared when it grows past storedMax.
	stored                           map[string]struct{}
	chunks, tokens, spilled, invalid atomic.Int64
}

const storedMax = 1 << 16

// TierLoads counts a TieredCache's loads since start.
type TierLoads struct {
	Chunks, Tokens int64 // loaded from the store
	Spilled        int64 // chunks queued for writing
	Invalid        int64 // entries that passed the checksum but did not decode
}

// NewTieredCache returns a tiered cache over p.
func NewTieredCache(p *PrefixCache, cfg TierConfig) *TieredCache {
	if cfg.ChunkTokens <= 0 {
		cfg.ChunkTokens = 256
	}
	if cfg.Level == (codec.Level{}) {
		cfg.Level, _ = codec.ParseLevel("cg1")
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &TieredCache{PrefixCache: p, cfg: cfg, log: cfg.Logger, stored: map[string]struct{}{}}
}

// Store returns the store below the cache.
func (t *TieredCache) Store() *store.Store { return t.cfg.Store }

// Loads returns the load counts; safe for concurrent use.
func (t *TieredCache) Loads() TierLoads {
	return TierLoads{Chunks: t.chunks.Load(), Tokens: t.tokens.Load(), Spilled: t.spilled.Load(), Invalid: t.invalid.Load()}
}

// chunkKeys returns the keys of the whole chunks of tokens under salt.
func (t *TieredCache) chunkKeys(salt string, tokens []int) []string {
	c := t.cfg.ChunkTokens
	tenant := sha256.Sum256([]byte(salt))
	ns := fmt.Sprintf("%s/%s.c%d/%s", t.cfg.Namespace, t.cfg.Level, c, hex.EncodeToString(tenant[:8]))
	h := sha256.Sum256([]byte(ns))
	keys := make([]string, len(tokens)/c)
	buf := make([]byte, 0, len(h)+4*c)
	for i := range keys {
		buf = append(buf[:0], h[:]...)
		for _, id := range tokens[i*c : (i+1)*c] {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
		}
		h = sha256.Sum256(buf)
		keys[i] = ns + "/" + hex.EncodeToString(h[:16])
	}
	return keys
}

// Acquire returns the cache of the longest prefix of prompt found in the
// prefix tree or, beyond it, in the store (at most len(prompt)−1 tokens).
func (t *TieredCache) Acquire(salt string, prompt []int) (*kvcache.Seq, error) {
	seq, err := t.PrefixCache.Acquire(salt, prompt)
	if err != nil || len(prompt) < 2 {
		return seq, err
	}
	c := t.cfg.ChunkTokens
	limit := len(prompt) - 1
	first := seq.Next() / c // the first chunk the tree does not hold whole
	if (first+1)*c > limit {
		return seq, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.LoadTimeout)
	defer cancel()
	keys := t.chunkKeys(salt, prompt[:limit])
	// Fetch the run of chunks found, then decode them in parallel.
	var payloads [][]byte
	for i := first; i < len(keys); i++ {
		payload, _, err := t.cfg.Store.Get(ctx, keys[i])
		if err != nil {
			break
		}
		payloads = append(payloads, payload)
	}
	chunks := make([]*codec.Chunk, len(payloads))
	errs := make([]error, len(payloads))
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(len(payloads), runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for j := int(next.Add(1) - 1); j < len(payloads); j = int(next.Add(1) - 1) {
				i := first + j
				ch, _, err := codec.Decode(payloads[j])
				if err == nil && (ch.Start != i*c || ch.Tokens != c || ch.Layers != seq.Layers() || ch.Heads != seq.KVHeads() || ch.Dim != seq.HeadDim()) {
					err = fmt.Errorf("chunk %d of %d tokens at %d, want %d tokens at %d", i, ch.Tokens, ch.Start, c, i*c)
				}
				chunks[j], errs[j] = ch, err
			}
		})
	}
	wg.Wait()
	for j, err := range errs {
		if err != nil {
			t.invalid.Add(1)
			t.log.Warn("kv store: entry does not decode; deleting it, the tokens are recomputed", "key", keys[first+j], "err", err)
			t.cfg.Store.Invalidate(ctx, keys[first+j])
			chunks = chunks[:j]
			break
		}
		t.stored[keys[first+j]] = struct{}{}
	}
	if len(chunks) == 0 {
		return seq, nil
	}
	if seq.Next() > first*c {
		if err := seq.Truncate(first * c); err != nil {
			return seq, nil
		}
	}
	for _, ch := range chunks {
		if err := ch.AppendTo(seq); err != nil {
			break // the budget is full: compute the rest
		}
		t.chunks.Add(1)
		t.tokens.Add(int64(ch.Tokens))
	}
	return seq, nil
}

// Share offers s's tokens to later prompts, as PrefixCache.Share does,
// and queues its whole chunks for the store.
func (t *TieredCache) Share(s *kvcache.Seq, salt string, tokens []int) {
	t.PrefixCache.Share(s, salt, tokens)
	t.spill(s, salt, tokens)
}

// Release keeps the sequence in the prefix tree, as PrefixCache.Release
// does, after queueing its whole chunks for the store.
func (t *TieredCache) Release(s *kvcache.Seq, salt string, tokens []int) {
	if tokens != nil {
		t.spill(s, salt, tokens)
	}
	t.PrefixCache.Release(s, salt, tokens)
}

// spill queues the whole chunks of s not yet stored. It forks them (no
// copy) for the writer goroutine, which encodes and writes them and then
// releases the fork.
func (t *TieredCache) spill(s *kvcache.Seq, salt string, tokens []int) {
	c := t.cfg.ChunkTokens
	n := len(tokens) / c * c
	if n == 0 || s.Next() < n || !holdsAll(s, n) {
		return
	}
	keys := t.chunkKeys(salt, tokens[:n])
	var todo []int
	for i, k := range keys {
		if _, ok := t.stored[k]; !ok {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return
	}
	f, err := s.Fork(n)
	if err != nil {
		return
	}
	level := t.cfg.Level
	queued := t.cfg.Store.Spill(func(w *store.Writer) {
		defer f.Release()
		for _, i := range todo {
			if w.Has(keys[i]) {
				continue
			}
			ch, err := codec.FromSeq(f, i*c, c)
			if err != nil {
				return
			}
			w.Put(keys[i], codec.Encode(ch, level))
		}
	})
	if !queued {
		f.Release()
		return
	}
	if len(t.stored) > storedMax {
		clear(t.stored)
	}
	for _, i := range todo {
		t.stored[keys[i]] = struct{}{}
	}
	t.spilled.Add(int64(len(todo)))
}

// holdsAll reports whether every head of s holds its first n positions
// unthinned (no press has evicted from them).
func holdsAll(s *kvcache.Seq, n int) bool {
	for l := range s.Layers() {
		for h := range s.KVHeads() {
			v := s.View(l, h)
			if v.Len() < n || v.Pos(n-1) != n-1 {
				return false
			}
		}
	}
	return true
}
