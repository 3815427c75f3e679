package semcache

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Record is an entry as a Persister keeps it: everything needed to put it
// back into the exact, surface and semantic tiers of another process.
type Record struct {
	Tenant   string `json:"tenant"`
	Category string `json:"category"`
	// ExactKey, SurfaceKey and Partition are the request's hashes
	// (Request.ExactKey, SurfaceKey, PartitionKey), without the tenant.
	ExactKey   string `json:"exact_key"`
	SurfaceKey string `json:"surface_key"`
	Partition  string `json:"partition"`
	// Text is the question as SurfaceText normalized it, Question as asked.
	Text     string `json:"text"`
	Question string `json:"question"`
	// Vec is the unit-length embedding of Text (nil without a semantic tier).
	Vec    []float32 `json:"vec,omitempty"`
	Answer *Answer   `json:"answer"`
	// Expires is when the entry stops being served; TTL the category's TTL
	// when it was stored (0: none).
	Expires time.Time     `json:"expires"`
	TTL     time.Duration `json:"ttl"`
	// Embedder is Config.Embedder when the entry was stored: vectors of
	// another embedder are not loaded.
	Embedder string `json:"embedder"`
}

// Persister keeps the cache's entries outside the process (package
// semcache/semredis keeps them in Redis). Put and Delete are called after
// the cache's lock is released; their errors are the persister's to report
// (the cache serves from memory either way).
type Persister interface {
	// Put writes rec; it must be gone after rec.Expires.
	Put(ctx context.Context, rec *Record)
	// Delete removes the record of tenant and exact key (an eviction or a
	// replaced answer).
	Delete(ctx context.Context, tenant, exactKey string)
	// Load calls fn with every stored record of this cache's model and
	// embedder.
	Load(ctx context.Context, fn func(*Record)) error
	// Get returns the record of tenant and exact key, or nil (none, or
	// the persister is unreachable).
	Get(ctx context.Context, tenant, exactKey string) *Record
}

type deletion struct{ tenant, exactKey string }

// SetPersister makes every stored entry go to p too, and every entry evicted
// by quota or replaced be deleted from it. Call Restore to load p's entries.
func (c *Cache) SetPersister(p Persister) {
	c.mu.Lock()
	c.persist = p
	c.mu.Unlock()
}

// Restore loads the persister's live entries into the tiers and the HNSW
// indexes (entries of another embedder or with a vector of another size,
// expired entries and unknown categories are skipped; quotas apply, the
// most recently stored kept). It returns how many entries were loaded and
// how many skipped.
func (c *Cache) Restore(ctx context.Context) (loaded, skipped int, err error) {
	c.mu.Lock()
	p := c.persist
	c.mu.Unlock()
	if p == nil {
		return 0, 0, nil
	}
	var recs []*Record
	err = p.Load(ctx, func(r *Record) { recs = append(recs, r) })
	// Oldest first, so that quota eviction keeps the newest.
	slices.SortFunc(recs, func(a, b *Record) int { return a.Expires.Compare(b.Expires) })
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, r := range recs {
		if c.adopt(r, now) == nil {
			skipped++
		} else {
			loaded++
		}
	}
	c.dropped = nil // evictions while loading stay in the persister: other replicas may have room
	return loaded, skipped, err
}

// adopt puts a persisted record into the tiers (c.mu held) and returns its
// entry, or nil when it is expired, of another embedder or of an unknown
// category.
func (c *Cache) adopt(r *Record, now time.Time) *entry {
	_, known := c.cfg.Categories[r.Category]
	switch {
	case r.Answer == nil || len(r.Answer.Choices) == 0 || !now.Before(r.Expires),
		r.Embedder != c.cfg.Embedder, !known && r.Category != "default",
		r.ExactKey == "":
		return nil
	}
	vec := r.Vec
	if !c.cfg.Semantic {
		vec = nil
	}
	e := &entry{tenant: r.Tenant, category: r.Category, exactKey: r.Tenant + "\x00" + r.ExactKey,
		surfaceKey: r.Tenant + "\x00" + r.SurfaceKey, text: r.Text, question: r.Question, numbers: numbersOf(r.Text),
		vec: vec, answer: r.Answer, ttl: r.TTL, expires: r.Expires}
	e.bytes = r.Answer.bytes() + int64(len(r.Text)+4*len(vec)+200)
	if old := c.exact[e.exactKey]; old != nil {
		c.remove(old)
	}
	c.insert(e, r.Partition, false, now)
	return e
}

// readThrough asks the persister for the request's exact key after a
// memory miss, so that replicas running side by side serve each other's
// entries; a found entry joins the tiers.
func (c *Cache) readThrough(ctx context.Context, q *Query) *entry {
	c.mu.Lock()
	p := c.persist
	c.mu.Unlock()
	if p == nil || !c.cfg.Exact {
		return nil
	}
	r := p.Get(ctx, q.Tenant, q.Request.ExactKey())
	if r == nil || r.Tenant != q.Tenant || r.ExactKey != q.Request.ExactKey() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.adopt(r, c.now())
	c.dropped = nil
	return e
}

// record returns e as a Record.
func (c *Cache) record(e *entry) *Record {
	return &Record{Tenant: e.tenant, Category: e.category, ExactKey: strings.TrimPrefix(e.exactKey, e.tenant+"\x00"),
		SurfaceKey: strings.TrimPrefix(e.surfaceKey, e.tenant+"\x00"), Partition: e.partition, Text: e.text,
		Question: e.question, Vec: e.vec, Answer: e.answer, Expires: e.expires, TTL: e.ttl, Embedder: c.cfg.Embedder}
}
