// Package semredis keeps the response cache's entries (package semcache) in
// Redis, so that replicas sharing a server share answers and a restarted
// server gets its entries back (semcache.Cache.Restore).
//
// Each entry is one JSON string value under
//
//	PREFIX MODEL ":" EMBEDDER ":" TENANT ":" EXACTKEY
//
// where PREFIX is "kvserve:semcache:", MODEL the served model's name,
// EMBEDDER and TENANT the first 16 hex digits of the SHA-256 of the
// embedder's spec and of the tenant, and EXACTKEY the request's exact hash.
// A value expires (Redis EXPIRE) when the entry does. Running replicas
// read each other's new entries through on an exact-tier miss (Get); the
// surface and semantic tiers of one replica learn another's entries at
// its next start (Load). Servers of another
// model or embedder never load each other's entries; a tenant's entries
// carry the tenant in the key and in the value, and are checked on load.
//
// A Redis that is down or slow never fails a request: writes are logged
// once and then skipped for a back-off (one second, doubling to thirty),
// and the cache serves from memory.
package semredis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kvserve/kvserve/semcache"
	"github.com/redis/go-redis/v9"
)

// Options configures a Store.
type Options struct {
	// URL is the server, e.g. redis://localhost:6379/0.
	URL string
	// Model is the served model's name and Embedder the cache's embedder
	// spec (semcache.Config.Embedder); both are part of every key.
	Model, Embedder string
	// Timeout bounds dialing and each command (250ms if 0); loading on
	// start gets 100 times as long in all.
	Timeout time.Duration
	// Logger reports a server that went down or came back.
	Logger *slog.Logger
}

// Store is a semcache.Persister on Redis. It is safe for concurrent use.
type Store struct {
	c       *redis.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	downTil time.Time
	backoff time.Duration
}

// Prefix is the start of every key the store writes.
const Prefix = "kvserve:semcache:"

// Open returns a store; it does not wait for the server (Load finds out).
func Open(o Options) (*Store, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("semcache redis: %q: %w (want redis://host:port[/db])", o.URL, err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	opt.Protocol = 2
	opt.ContextTimeoutEnabled = true
	return &Store{c: redis.NewClient(opt), prefix: Prefix + safe(o.Model) + ":" + short(o.Embedder) + ":",
		timeout: o.Timeout, log: o.Logger}, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.c.Close() }

// KeyPrefix returns the prefix of this model's and embedder's keys.
func (s *Store) KeyPrefix() string { return s.prefix }

func (s *Store) key(tenant, exactKey string) string {
	return s.prefix + short(tenant) + ":" + exactKey
}

// short is the first 16 hex digits of s's SHA-256.
func short(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// safe keeps a model name readable in a key but free of the characters
// that SCAN's patterns and the key layout give a meaning.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '*', '?', '[', ']', '\\', ':', ' ':
			return '_'
		}
		return r
	}, s)
}

// usable is false while the back-off after a failure runs.
func (s *Store) usable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !time.Now().Before(s.downTil)
}

// result records whether a command reached the server, logging changes.
func (s *Store) result(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil || err == redis.Nil {
		if s.backoff > 0 {
			s.log.Info("semcache redis: server is back")
			s.backoff = 0
		}
		return
	}
	if s.backoff == 0 {
		s.backoff = time.Second
		s.log.Warn("semcache redis: server unreachable; the response cache keeps entries in memory only", "err", err)
	} else {
		s.backoff = min(2*s.backoff, 30*time.Second)
	}
	s.downTil = time.Now().Add(s.backoff)
}

// Put writes rec with an expiry at rec.Expires.
func (s *Store) Put(ctx context.Context, rec *semcache.Record) {
	ttl := time.Until(rec.Expires)
	if ttl <= 0 || !s.usable() {
		return
	}
	val, err := json.Marshal(rec)
	if err != nil {
		s.log.Warn("semcache redis: cannot encode an entry", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	s.result(s.c.Set(ctx, s.key(rec.Tenant, rec.ExactKey), val, ttl).Err())
}

// Delete removes the entry of tenant and exactKey.
func (s *Store) Delete(ctx context.Context, tenant, exactKey string) {
	if !s.usable() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	s.result(s.c.Del(ctx, s.key(tenant, exactKey)).Err())
}

// Get returns the entry of tenant and exactKey, nil if there is none or
// the server does not answer.
func (s *Store) Get(ctx context.Context, tenant, exactKey string) *semcache.Record {
	if !s.usable() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	val, err := s.c.Get(ctx, s.key(tenant, exactKey)).Bytes()
	if !errors.Is(err, context.Canceled) {
		s.result(err)
	}
	if err != nil {
		return nil
	}
	var rec semcache.Record
	if json.Unmarshal(val, &rec) != nil {
		return nil
	}
	return &rec
}

// Load calls fn with every entry under this model's and embedder's prefix
// whose key matches its tenant (values that do not decode are skipped).
func (s *Store) Load(ctx context.Context, fn func(*semcache.Record)) error {
	ctx, cancel := context.WithTimeout(ctx, 100*s.timeout)
	defer cancel()
	var cursor uint64
	for {
		keys, next, err := s.c.Scan(ctx, cursor, s.prefix+"*", 512).Result()
		s.result(err)
		if err != nil {
			return fmt.Errorf("semcache redis: listing entries: %w", err)
		}
		if len(keys) > 0 {
			vals, err := s.c.MGet(ctx, keys...).Result()
			s.result(err)
			if err != nil {
				return fmt.Errorf("semcache redis: reading entries: %w", err)
			}
			for i, v := range vals {
				str, ok := v.(string)
				if !ok {
					continue // expired between SCAN and MGET
				}
				var rec semcache.Record
				if json.Unmarshal([]byte(str), &rec) != nil || s.key(rec.Tenant, rec.ExactKey) != keys[i] {
					continue
				}
				fn(&rec)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
