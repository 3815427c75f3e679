// Package semcache is a response cache for chat and completion requests,
// in front of the engine. Three tiers answer a request without running the
// model: the exact tier (a canonical hash of the whole request, see
// Request), the surface tier (the same with the question's case, spacing,
// polite prefix and end punctuation normalized) and the semantic tier (an
// HNSW index over embeddings of the question, searched among entries of the
// same tenant, category and partition — the rest of the request).
//
// A semantic match is served only when it clears its category's threshold
// (moved by load, see Threshold) and beats the runner-up — the closest entry
// with another answer — by the category's margin (back-off); otherwise the
// request misses. Entries live for their category's TTL (counted from the
// store, not from the last hit, unless Config.SlidingTTL), each tenant's
// category holds at most its quota (least recently used evicted first), and
// errors, truncated (finish reason length) and sampled answers are never
// stored. Tenants never see each other's entries. Storage is in memory;
// with a Persister (SetPersister, Restore) entries also go to, and come
// back from, outside the process (Redis: package semcache/semredis).
package semcache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Embedder turns texts into vectors; the cache normalizes them to unit
// length. Implementations are in package semcache/embed.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Name describes the embedder, e.g. "model:tinychat".
	Name() string
}

// Answer is a stored response: what a hit replays.
type Answer struct {
	Choices          []Choice `json:"choices"`
	PromptTokens     int      `json:"prompt_tokens"`
	CompletionTokens int      `json:"completion_tokens"`
}

// Choice is one generated choice.
type Choice struct {
	Text   string `json:"text"`
	Finish string `json:"finish_reason"`
}

func (a *Answer) bytes() int64 {
	n := int64(64)
	for _, c := range a.Choices {
		n += int64(len(c.Text) + len(c.Finish) + 16)
	}
	return n
}

func (a *Answer) same(b *Answer) bool {
	return slices.Equal(a.Choices, b.Choices)
}

// Query is one request to look up or store.
type Query struct {
	// Tenant names the request's namespace (an API key's hash, a cache salt).
	Tenant string
	// Request is the parsed body.
	Request *Request
	// Category is the category a header gave ("" if none); the request's
	// semcache_category field wins over it.
	Category string
}

// Neighbor is a semantic candidate of a lookup.
type Neighbor struct {
	Similarity float64
	// Eligible is false when the candidate fails the numbers check.
	Eligible bool
	// Text is the entry's question as normalized (SurfaceText), Question
	// as it was asked.
	Text, Question string
	Answer         *Answer
}

// Result is the outcome of a lookup.
type Result struct {
	Hit bool
	// Tier is the tier that answered: "exact", "surface" or "semantic"; on a
	// miss, "".
	Tier string
	// Category is the category the request was counted in ("default" if none).
	Category string
	// Classified is true when the category came from the classifier.
	Classified bool
	// Similarity is the best semantic match's cosine similarity (1 for a
	// hash hit, 0 when nothing was compared); RunnerUp the next answer's.
	Similarity, RunnerUp float64
	// Threshold is the similarity the match needed, after the load adjustment.
	Threshold float64
	// Reason says why a lookup missed: "empty", "below_threshold",
	// "ambiguous", "no_semantic", "unknown_category", "embed_error".
	Reason string
	// Answer is the answer served on a hit.
	Answer *Answer
	// Neighbors are the nearest semantic candidates, most similar first.
	Neighbors []Neighbor
	// Err is a run-time failure that made the lookup miss (an embedder
	// that failed, an unknown category).
	Err error

	vec []float32
}

// ErrUnknownCategory is returned for a category not in the configuration.
var ErrUnknownCategory = errors.New("semcache: unknown category")

// Cache is the response cache. It is safe for concurrent use.
type Cache struct {
	cfg Config
	emb Embedder
	now func() time.Time

	mu        sync.Mutex
	load      func() float64
	exact     map[string]*entry
	surface   map[string]*entry
	parts     map[string]*part
	buckets   map[string]*bucket
	centroids map[string]*centroid
	stats     map[string]*Stats
	stores    int

	// persist, if set, keeps entries outside the process; dropped are the
	// entries removed under the lock that it must delete.
	persist Persister
	dropped []deletion
}

type entry struct {
	tenant, category     string
	exactKey, surfaceKey string
	partition            string
	part                 *part
	node                 int
	text                 string
	question             string
	numbers              string
	vec                  []float32
	answer               *Answer
	bytes                int64
	expires              time.Time
	ttl                  time.Duration
	elem                 *list.Element
	bucket               *bucket
}

type part struct {
	key   string
	idx   *Index
	nodes []*entry
}

type bucket struct {
	lru   *list.List
	bytes int64
}

type centroid struct {
	sum []float64
	n   int
}

// Stats counts one category's traffic.
type Stats struct {
	Category string
	// Hits by tier.
	Hits map[string]int64
	// Misses by reason.
	Misses map[string]int64
	// Stored entries; Rejected answers by reason (sampled, truncated, …).
	Stores   int64
	Rejected map[string]int64
	// Evicted by quota and Expired by TTL.
	Evicted, Expired int64
	// Audits counts false-hit audits of semantic hits by result: "match"
	// (the model answered as the cache did), "mismatch", "error".
	Audits map[string]int64
	// Entries and Bytes held now.
	Entries int64
	Bytes   int64
}

// New returns a cache with cfg (validated) and the embedder of its
// semantic tier (nil: hash tiers only). Each category's examples are
// embedded now, so a failing embedder is an error at start.
func New(ctx context.Context, cfg Config, emb Embedder) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, emb: emb, now: time.Now, load: func() float64 { return 0.5 },
		exact: map[string]*entry{}, surface: map[string]*entry{}, parts: map[string]*part{},
		buckets: map[string]*bucket{}, centroids: map[string]*centroid{}, stats: map[string]*Stats{}}
	if emb == nil || !c.Calibrated() {
		c.cfg.Semantic = false
	}
	if c.cfg.Semantic {
		for _, name := range cfg.CategoryNames() {
			ex := cfg.Categories[name].Examples
			if len(ex) == 0 {
				continue
			}
			vecs, err := emb.Embed(ctx, ex)
			if err != nil {
				return nil, fmt.Errorf("semcache: embedding the examples of %s with %s: %w", name, emb.Name(), err)
			}
			for _, v := range vecs {
				c.addCentroid(name, Normalize(v))
			}
		}
	}
	return c, nil
}

// Calibrated reports whether the thresholds were chosen for the embedder
// in use (Config.CalibratedFor); if not, the semantic tier is off.
func (c *Cache) Calibrated() bool {
	return c.cfg.CalibratedFor == "" || c.cfg.CalibratedFor == c.cfg.Embedder
}

// Config returns the cache's configuration.
func (c *Cache) Config() Config { return c.cfg }

// Embedder returns the semantic tier's embedder (nil if none).
func (c *Cache) Embedder() Embedder { return c.emb }

// SetLoad sets the function that reports load in [0, 1] (default 0.5:
// the threshold as configured).
func (c *Cache) SetLoad(f func() float64) {
	c.mu.Lock()
	c.load = f
	c.mu.Unlock()
}

// SetClock replaces time.Now, for tests of TTLs.
func (c *Cache) SetClock(now func() time.Time) {
	c.mu.Lock()
	c.now = now
	c.mu.Unlock()
}

// numberRE finds the numbers of a text.
var numberRE = regexp.MustCompile(`\d+(?:[.,]\d+)*`)

func numbersOf(surface string) string {
	return strings.Join(numberRE.FindAllString(surface, -1), " ")
}

func (c *Cache) stat(category string) *Stats {
	s := c.stats[category]
	if s == nil {
		s = &Stats{Category: category, Hits: map[string]int64{}, Misses: map[string]int64{}, Rejected: map[string]int64{}, Audits: map[string]int64{}}
		c.stats[category] = s
	}
	return s
}

// declared returns the category the request names, checked.
func (c *Cache) declared(q *Query) (string, error) {
	name := q.Request.Category
	if name == "" {
		name = strings.ToLower(strings.TrimSpace(q.Category))
	}
	if name == "" {
		return "", nil
	}
	if _, ok := c.cfg.Categories[name]; !ok {
		return name, fmt.Errorf("%w %q (configured: %s)", ErrUnknownCategory, name, strings.Join(c.cfg.CategoryNames(), ", "))
	}
	return name, nil
}

// Lookup looks the request up in the exact, surface and semantic tiers, in
// that order. Errors (an embedder that failed, an unknown category) make a
// miss with Result.Err set.
func (c *Cache) Lookup(ctx context.Context, q *Query) *Result {
	res := &Result{Category: "default"}
	cat, err := c.declared(q)
	if err != nil {
		res.Reason, res.Err = "unknown_category", err
		c.mu.Lock()
		c.stat("unknown").Misses["unknown_category"]++
		c.mu.Unlock()
		return res
	}
	if cat != "" {
		res.Category = cat
	}
	r := q.Request
	c.mu.Lock()
	now := c.now()
	for _, tier := range []struct {
		name string
		on   bool
		m    map[string]*entry
		key  func() string
	}{{"exact", c.cfg.Exact, c.exact, r.ExactKey}, {"surface", c.cfg.Surface, c.surface, r.SurfaceKey}} {
		if !tier.on {
			continue
		}
		e := tier.m[q.Tenant+"\x00"+tier.key()]
		if e == nil || e.tenant != q.Tenant {
			continue
		}
		if !now.Before(e.expires) {
			c.stat(e.category).Expired++
			c.remove(e)
			continue
		}
		c.touch(e, now)
		res.Hit, res.Tier, res.Similarity, res.Answer, res.Category = true, tier.name, 1, e.answer, e.category
		c.stat(e.category).Hits[tier.name]++
		c.mu.Unlock()
		return res
	}
	c.mu.Unlock()
	if e := c.readThrough(ctx, q); e != nil {
		res.Hit, res.Tier, res.Similarity, res.Answer, res.Category = true, "exact", 1, e.answer, e.category
		c.mu.Lock()
		c.stat(e.category).Hits["exact"]++
		c.mu.Unlock()
		return res
	}
	if !c.cfg.Semantic {
		res.Reason = "no_semantic"
		c.miss(res)
		return res
	}
	text := SurfaceText(r.Text)
	vecs, err := c.emb.Embed(ctx, []string{text})
	if err != nil || len(vecs) != 1 || len(vecs[0]) == 0 {
		if err == nil {
			err = fmt.Errorf("semcache: embedder %s returned no vector", c.emb.Name())
		}
		res.Reason, res.Err = "embed_error", err
		c.miss(res)
		return res
	}
	res.vec = Normalize(vecs[0])
	c.mu.Lock()
	defer c.mu.Unlock()
	if cat == "" && c.cfg.Classify {
		if guess := c.classify(res.vec); guess != "" {
			res.Category, res.Classified = guess, true
		}
	}
	pol := c.cfg.policy(res.Category)
	res.Threshold = Threshold(pol.Threshold, c.cfg.LoadAdapt, c.load())
	p := c.parts[partKey(q.Tenant, r.PartitionKey(), res.Category)]
	if p == nil || p.idx.Len() == 0 {
		res.Reason = "empty"
		c.stat(res.Category).Misses["empty"]++
		return res
	}
	nums := numbersOf(text)
	var best *entry
	res.RunnerUp = -1
	for _, m := range p.idx.Search(res.vec, 8) {
		e := p.nodes[m.ID]
		if !now.Before(e.expires) {
			continue
		}
		n := Neighbor{Similarity: float64(m.Similarity), Eligible: !pol.MatchNumbers || e.numbers == nums, Text: e.text, Question: e.question, Answer: e.answer}
		res.Neighbors = append(res.Neighbors, n)
		if !n.Eligible {
			continue
		}
		if best == nil {
			best, res.Similarity = e, n.Similarity
		} else if res.RunnerUp < 0 && !e.answer.same(best.answer) {
			res.RunnerUp = n.Similarity
		}
	}
	if best == nil {
		res.Reason = "below_threshold"
		c.stat(res.Category).Misses[res.Reason]++
		return res
	}
	hit, reason := Decide(res.Similarity, res.RunnerUp, res.Threshold, pol.Margin)
	if !hit {
		res.Reason = reason
		c.stat(res.Category).Misses[reason]++
		return res
	}
	c.touch(best, now)
	res.Hit, res.Tier, res.Answer = true, "semantic", best.answer
	c.stat(res.Category).Hits["semantic"]++
	return res
}

func (c *Cache) miss(res *Result) {
	c.mu.Lock()
	c.stat(res.Category).Misses[res.Reason]++
	c.mu.Unlock()
}

func partKey(tenant, partition, category string) string {
	return tenant + "\x00" + partition + "\x00" + category
}

// classify returns the category whose centroid is most similar to v.
func (c *Cache) classify(v []float32) string {
	best, bestSim := "", -2.0
	for name, ct := range c.centroids {
		var s, norm float64
		for i, x := range ct.sum {
			s += x * float64(v[i])
			norm += x * x
		}
		if norm == 0 {
			continue
		}
		if sim := s / sqrt(norm); sim > bestSim {
			best, bestSim = name, sim
		}
	}
	return best
}

func (c *Cache) addCentroid(name string, v []float32) {
	ct := c.centroids[name]
	if ct == nil {
		ct = &centroid{sum: make([]float64, len(v))}
		c.centroids[name] = ct
	}
	if len(ct.sum) != len(v) {
		return
	}
	for i, x := range v {
		ct.sum[i] += float64(x)
	}
	ct.n++
}

// touch marks e used now (and restarts its TTL when sliding).
func (c *Cache) touch(e *entry, now time.Time) {
	e.bucket.lru.MoveToFront(e.elem)
	if c.cfg.SlidingTTL && e.ttl > 0 {
		e.expires = now.Add(e.ttl)
	}
}

// Store keeps the answer of a request that missed (res is its lookup, or
// nil). It returns the reason an answer was not stored: "sampled" (the
// request sampled with temperature > 0 and did not set
// semcache_store_sampled), "truncated" (a choice ended for length or
// anything but stop), "empty", "unknown_category", "embed_error"; "" when
// stored.
func (c *Cache) Store(ctx context.Context, q *Query, res *Result, a *Answer) string {
	r := q.Request
	reject := func(cat, reason string) string {
		c.mu.Lock()
		c.stat(cat).Rejected[reason]++
		c.mu.Unlock()
		return reason
	}
	cat, err := c.declared(q)
	if err != nil {
		return reject("unknown", "unknown_category")
	}
	if res != nil && res.Category != "" && cat == "" {
		cat = res.Category
	}
	if cat == "" {
		cat = "default"
	}
	switch {
	case a == nil || len(a.Choices) == 0:
		return reject(cat, "empty")
	case r.Sampled && !r.StoreSampled:
		return reject(cat, "sampled")
	}
	for _, ch := range a.Choices {
		if ch.Finish != "stop" {
			return reject(cat, "truncated")
		}
	}
	text := SurfaceText(r.Text)
	var vec []float32
	if c.cfg.Semantic {
		if res != nil && res.vec != nil {
			vec = res.vec
		} else {
			vecs, err := c.emb.Embed(ctx, []string{text})
			if err != nil || len(vecs) != 1 || len(vecs[0]) == 0 {
				return reject(cat, "embed_error")
			}
			vec = Normalize(vecs[0])
		}
	}
	pol := c.cfg.policy(cat)
	c.mu.Lock()
	now := c.now()
	ek, sk := q.Tenant+"\x00"+r.ExactKey(), q.Tenant+"\x00"+r.SurfaceKey()
	replaced := false
	if old := c.exact[ek]; old != nil {
		c.remove(old)
		replaced = true
	}
	e := &entry{tenant: q.Tenant, category: cat, exactKey: ek, surfaceKey: sk, text: text, question: r.Text, numbers: numbersOf(text),
		vec: vec, answer: a, bytes: a.bytes() + int64(len(text)+4*len(vec)+200), ttl: time.Duration(pol.TTL)}
	e.expires = now.Add(e.ttl)
	if e.ttl == 0 {
		e.expires = now.Add(100 * 365 * 24 * time.Hour)
	}
	if vec != nil && (q.Request.Category != "" || q.Category != "") && cat != "default" {
		c.addCentroid(cat, vec)
	}
	c.insert(e, r.PartitionKey(), true, now)
	p, dropped := c.persist, c.dropped
	c.dropped = nil
	var rec *Record
	if p != nil && e.elem != nil {
		rec = c.record(e)
	}
	c.mu.Unlock()
	if p != nil {
		for _, d := range dropped {
			if replaced && d.tenant == e.tenant && d.exactKey == ek {
				continue // overwritten by the Put below
			}
			p.Delete(ctx, d.tenant, strings.TrimPrefix(d.exactKey, d.tenant+"\x00"))
		}
		if rec != nil {
			p.Put(ctx, rec)
		}
	}
	return ""
}

// insert puts e into the tiers, its bucket and its partition's index, then
// enforces the category's quota. stored counts it as a store.
func (c *Cache) insert(e *entry, partition string, stored bool, now time.Time) {
	pol := c.cfg.policy(e.category)
	e.partition = partition
	bk := e.tenant + "\x00" + e.category
	b := c.buckets[bk]
	if b == nil {
		b = &bucket{lru: list.New()}
		c.buckets[bk] = b
	}
	e.bucket, e.elem = b, b.lru.PushFront(e)
	b.bytes += e.bytes
	c.exact[e.exactKey] = e
	if c.cfg.Surface {
		if _, taken := c.surface[e.surfaceKey]; !taken {
			c.surface[e.surfaceKey] = e
		}
	}
	if e.vec != nil {
		pk := partKey(e.tenant, partition, e.category)
		p := c.parts[pk]
		if p == nil {
			p = &part{key: pk, idx: NewIndex(len(e.vec), 16, 100)}
			c.parts[pk] = p
		}
		if p.idx.Dim() == len(e.vec) {
			e.part, e.node = p, p.idx.Add(e.vec)
			p.nodes = append(p.nodes, e)
		}
	}
	st := c.stat(e.category)
	if stored {
		st.Stores++
	}
	st.Entries++
	st.Bytes += e.bytes
	for b.lru.Len() > pol.MaxEntries || b.bytes > pol.MaxBytes {
		old := b.lru.Back().Value.(*entry)
		c.stat(old.category).Evicted++
		c.remove(old)
	}
	c.stores++
	if c.stores%256 == 0 {
		c.sweep(now)
	}
}

// remove drops e from every tier.
func (c *Cache) remove(e *entry) {
	if c.persist != nil && e.elem != nil {
		c.dropped = append(c.dropped, deletion{e.tenant, e.exactKey})
	}
	if c.exact[e.exactKey] == e {
		delete(c.exact, e.exactKey)
	}
	if c.surface[e.surfaceKey] == e {
		delete(c.surface, e.surfaceKey)
	}
	if e.part != nil {
		e.part.idx.Remove(e.node)
		if e.part.idx.Len() == 0 {
			delete(c.parts, e.part.key)
		} else if d := e.part.idx.Deleted(); d > 64 && d > e.part.idx.Len() {
			c.rebuild(e.part)
		}
		e.part = nil
	}
	if e.elem != nil {
		e.bucket.lru.Remove(e.elem)
		e.bucket.bytes -= e.bytes
		e.elem = nil
		st := c.stat(e.category)
		st.Entries--
		st.Bytes -= e.bytes
	}
}

// rebuild re-indexes a partition's live entries, dropping deleted nodes.
func (c *Cache) rebuild(p *part) {
	old := p.nodes
	p.idx = NewIndex(p.idx.Dim(), 16, 100)
	p.nodes = nil
	for _, e := range old {
		if e.part == p && e.elem != nil {
			e.node = p.idx.Add(e.vec)
			p.nodes = append(p.nodes, e)
		}
	}
}

// sweep removes expired entries.
func (c *Cache) sweep(now time.Time) {
	var dead []*entry
	for _, b := range c.buckets {
		for el := b.lru.Front(); el != nil; el = el.Next() {
			if e := el.Value.(*entry); !now.Before(e.expires) {
				dead = append(dead, e)
			}
		}
	}
	for _, e := range dead {
		c.stat(e.category).Expired++
		c.remove(e)
	}
}

// RecordAudit counts a false-hit audit of a semantic hit in category:
// result is "match", "mismatch" or "error".
func (c *Cache) RecordAudit(category, result string) {
	c.mu.Lock()
	c.stat(category).Audits[result]++
	c.mu.Unlock()
}

// Stats returns a copy of every category's counters, sorted by category.
func (c *Cache) Stats() []Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Stats, 0, len(c.stats))
	for _, s := range c.stats {
		cp := *s
		cp.Hits, cp.Misses, cp.Rejected, cp.Audits = clone(s.Hits), clone(s.Misses), clone(s.Rejected), clone(s.Audits)
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Category, b.Category) })
	return out
}

func clone(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Examples returns up to k cached question/answer pairs for IC-Cache mode
// (Config.IC): the eligible neighbours of a missed lookup with similarity
// ≥ minSim and distinct answers, least similar first (so that the closest
// example sits next to the question).
func (r *Result) Examples(k int, minSim float64) []Neighbor {
	var out []Neighbor
	for _, n := range r.Neighbors {
		if len(out) == k {
			break
		}
		if !n.Eligible || n.Similarity < minSim {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o.Answer.same(n.Answer)
		}
		if !dup {
			out = append(out, n)
		}
	}
	slices.Reverse(out)
	return out
}
