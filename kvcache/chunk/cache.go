// Package chunk keeps the KV caches of documents computed on their own, so
// that a later prompt holding the same document — at any position, after
// any other documents — can reuse its keys and values instead of computing
// them again (CacheBlend, Cache-Craft, APE). It sits beside the prefix
// tree (kvcache/prefix), which only serves prompts that start alike.
//
// An entry is keyed by the hash of the document's tokens and of the tokens
// it was computed after (its context: nothing, or a shared prefix such as
// the system prompt), by the model, the KV format and the tenant's salt.
// Tenants never share an entry: each salt has its own map, so a lookup
// under one salt cannot find, or time, another's documents.
//
// Entries hold kvcache sequences drawn from the same block pool as every
// other cache, so they count against the same budget; Reclaim evicts the
// least recently used ones when room is needed. A sequence handed out by
// Get shares the entry's blocks by reference and keeps them alive after
// the entry is evicted.
package chunk

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/kvserve/kvserve/kvcache"
)

// Key names one chunk's KV.
type Key struct {
	Content [32]byte // SHA-256 of the chunk's tokens
	Context [32]byte // SHA-256 of the tokens it was computed after
	Model   string   // the model's name
	Format  kvcache.Format
}

// Hash returns the SHA-256 of a token sequence.
func Hash(tokens []int) [32]byte {
	h := sha256.New()
	var b [8]byte
	for _, t := range tokens {
		binary.LittleEndian.PutUint64(b[:], uint64(t))
		h.Write(b[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// NewKey returns the key of tokens computed after context by model in
// format.
func NewKey(model string, format kvcache.Format, context, tokens []int) Key {
	return Key{Content: Hash(tokens), Context: Hash(context), Model: model, Format: format}
}

// Entry is a chunk's cached KV.
type Entry struct {
	// Seq holds the chunk's tokens (and only them) in every head, at
	// positions Start … Start+len(Tokens)−1: where they sat when computed.
	Seq    *kvcache.Seq
	Start  int
	Tokens []int
}

type item struct {
	salt string
	key  Key
	e    Entry
	elem *list.Element
}

// Stats counts a cache's contents and traffic.
type Stats struct {
	Entries int   // chunks held
	Tokens  int   // their tokens
	Bytes   int64 // the bytes of their blocks, as stored
	// Totals since the cache was made.
	Hits, Misses, Inserted, Evicted int64
	HitTokens                       int64 // tokens of the chunks found
}

// Cache is a chunk cache over one block pool. It is safe for concurrent use.
type Cache struct {
	pool *kvcache.Pool

	mu    sync.Mutex
	salts map[string]map[Key]*item
	lru   *list.List // front: most recently used
	stats Stats
}

// New returns an empty chunk cache whose entries come from pool.
func New(pool *kvcache.Pool) *Cache {
	return &Cache{pool: pool, salts: map[string]map[Key]*item{}, lru: list.New()}
}

// Pool returns the pool the entries draw from.
func (c *Cache) Pool() *kvcache.Pool { return c.pool }

// Get looks a chunk up under salt. On a hit it returns a sequence sharing
// the entry's blocks by reference (the caller releases it), the entry's
// start position and tokens, and marks the entry used; a miss is counted.
func (c *Cache) Get(salt string, key Key) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it := c.salts[salt][key]
	if it == nil {
		c.stats.Misses++
		return Entry{}, false
	}
	seq, err := it.e.Seq.Fork(it.e.Seq.Next())
	if err != nil {
		c.stats.Misses++
		return Entry{}, false
	}
	c.lru.MoveToFront(it.elem)
	c.stats.Hits++
	c.stats.HitTokens += int64(len(it.e.Tokens))
	return Entry{Seq: seq, Start: it.e.Start, Tokens: it.e.Tokens}, true
}

// Contains reports whether salt holds key, changing nothing.
func (c *Cache) Contains(salt string, key Key) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.salts[salt][key] != nil
}

// Put hands e to the cache under salt and key; the cache owns e.Seq from
// then on. A key already held keeps its entry and e.Seq is released.
func (c *Cache) Put(salt string, key Key, e Entry) error {
	if e.Seq == nil || e.Seq.Pool() != c.pool {
		if e.Seq != nil {
			e.Seq.Release()
		}
		return fmt.Errorf("chunk: entry's sequence is not from the cache's pool")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.salts[salt]
	if m == nil {
		m = map[Key]*item{}
		c.salts[salt] = m
	}
	if it := m[key]; it != nil {
		c.lru.MoveToFront(it.elem)
		e.Seq.Release()
		return nil
	}
	it := &item{salt: salt, key: key, e: e}
	it.elem = c.lru.PushFront(it)
	m[key] = it
	c.stats.Entries++
	c.stats.Tokens += len(e.Tokens)
	c.stats.Inserted++
	return nil
}

// Reclaim evicts entries, least recently used first, until the pool's
// bytes in use have dropped by at least bytes or none is left, and returns
// the bytes freed. Blocks still held by a sequence from Get stay.
func (c *Cache) Reclaim(bytes int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := c.pool.UsedBytes()
	for c.lru.Len() > 0 && start-c.pool.UsedBytes() < bytes {
		it := c.lru.Remove(c.lru.Back()).(*item)
		delete(c.salts[it.salt], it.key)
		if len(c.salts[it.salt]) == 0 {
			delete(c.salts, it.salt)
		}
		it.e.Seq.Release()
		c.stats.Entries--
		c.stats.Tokens -= len(it.e.Tokens)
		c.stats.Evicted++
	}
	return start - c.pool.UsedBytes()
}

// Flush evicts every entry.
func (c *Cache) Flush() { c.Reclaim(1 << 62) }

// Stats returns the cache's contents and traffic.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	for e := c.lru.Front(); e != nil; e = e.Next() {
		s.Bytes += e.Value.(*item).e.Seq.Bytes()
	}
	return s
}
