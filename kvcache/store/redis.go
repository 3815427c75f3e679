package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a Redis tier.
type RedisOptions struct {
	// URL is the server, e.g. redis://localhost:6379/0 (redis.ParseURL's
	// syntax: user, password, database, rediss:// for TLS).
	URL string
	// Prefix starts every key the tier writes; "kvserve:" if empty.
	Prefix string
	// TTL is how long a value lives after it is written; 0: no expiry.
	TTL time.Duration
	// Cap bounds the bytes of values the tier keeps (over every process
	// sharing the prefix); the least recently written go first. 0: no cap
	// (leave it to the server's maxmemory policy).
	Cap int64
	// Timeout bounds dialing, each read and each write; 250ms if 0. A
	// slow server costs a request at most this, then a recompute.
	Timeout time.Duration
	// Logger logs when the server goes down and comes back.
	Logger *slog.Logger
}

// Redis is a tier on a Redis server. Values are plain string keys with a
// TTL. With a cap, a sorted set (by write time) and a hash of sizes under
// the prefix let every process sharing the server evict the oldest values
// once the total passes the cap.
//
// When the server fails (refused, timed out), the tier reports
// ErrUnavailable without trying for a back-off that starts at one second
// and doubles up to thirty, so a dead server costs one timeout, not one
// per request.
type Redis struct {
	c      *redis.Client
	prefix string
	ttl    time.Duration
	cap    int64
	log    *slog.Logger

	mu      sync.Mutex
	downTil time.Time
	backoff time.Duration
}

// OpenRedis returns a Redis tier. It does not wait for the server: a
// server that is down is found out, and logged, at the first operation.
func OpenRedis(o RedisOptions) (*Redis, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("kv redis tier: %q: %w (want redis://host:port[/db])", o.URL, err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.Prefix == "" {
		o.Prefix = "kvserve:"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	opt.MaxRetries = -1 // fail fast; the caller recomputes
	opt.DisableIdentity = true
	opt.Protocol = 2
	opt.ContextTimeoutEnabled = true
	return &Redis{c: redis.NewClient(opt), prefix: o.Prefix, ttl: o.TTL, cap: o.Cap, log: o.Logger}, nil
}

// Name returns "redis".
func (r *Redis) Name() string { return "redis" }

func (r *Redis) key(k string) string { return r.prefix + "v:" + k }

// usable reports ErrUnavailable while the back-off runs.
func (r *Redis) usable() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Now().Before(r.downTil) {
		return ErrUnavailable
	}
	return nil
}

// result records whether an operation reached the server.
func (r *Redis) result(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		r.mu.Lock()
		if r.backoff > 0 {
			r.log.Info("kv redis tier: server is back")
			r.backoff = 0
		}
		r.mu.Unlock()
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	r.mu.Lock()
	if r.backoff == 0 {
		r.backoff = time.Second
		r.log.Warn("kv redis tier: server unreachable; serving without it (requests recompute)", "err", err)
	} else {
		r.backoff = min(2*r.backoff, 30*time.Second)
	}
	r.downTil = time.Now().Add(r.backoff)
	r.mu.Unlock()
	return fmt.Errorf("kv redis tier: %w", err)
}

// Get returns the value of key.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	if err := r.usable(); err != nil {
		return nil, err
	}
	b, err := r.c.Get(ctx, r.key(key)).Bytes()
	if err = r.result(err); errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	return b, err
}

// Has reports whether key exists.
func (r *Redis) Has(ctx context.Context, key string) (bool, error) {
	if err := r.usable(); err != nil {
		return false, err
	}
	n, err := r.c.Exists(ctx, r.key(key)).Result()
	return n > 0, r.result(err)
}

// Put sets key to val with the tier's TTL and, under a cap, evicts the
// oldest values beyond it.
func (r *Redis) Put(ctx context.Context, key string, val []byte) error {
	if err := r.usable(); err != nil {
		return err
	}
	k := r.key(key)
	if r.cap <= 0 {
		return r.result(r.c.Set(ctx, k, val, r.ttl).Err())
	}
	pipe := r.c.TxPipeline()
	pipe.Set(ctx, k, val, r.ttl)
	pipe.ZAdd(ctx, r.prefix+"lru", redis.Z{Score: float64(time.Now().UnixNano()), Member: k})
	old := pipe.HGet(ctx, r.prefix+"sizes", k)
	pipe.HSet(ctx, r.prefix+"sizes", k, len(val))
	total := pipe.IncrBy(ctx, r.prefix+"bytes", int64(len(val)))
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		return r.result(err)
	}
	r.result(nil)
	size := total.Val()
	if n, err := strconv.ParseInt(old.Val(), 10, 64); err == nil && n > 0 { // replaced: count it once
		size = r.c.DecrBy(ctx, r.prefix+"bytes", n).Val()
	}
	for size > r.cap {
		popped, err := r.c.ZPopMin(ctx, r.prefix+"lru", 1).Result()
		if err != nil || len(popped) == 0 {
			return r.result(err)
		}
		for _, z := range popped {
			m := z.Member.(string)
			n, _ := r.c.HGet(ctx, r.prefix+"sizes", m).Int64()
			pipe := r.c.TxPipeline()
			pipe.Del(ctx, m)
			pipe.HDel(ctx, r.prefix+"sizes", m)
			dec := pipe.DecrBy(ctx, r.prefix+"bytes", n)
			if _, err := pipe.Exec(ctx); err != nil {
				return r.result(err)
			}
			size = dec.Val()
		}
	}
	return nil
}

// Delete removes key.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.usable(); err != nil {
		return err
	}
	k := r.key(key)
	if r.cap <= 0 {
		return r.result(r.c.Del(ctx, k).Err())
	}
	n, _ := r.c.HGet(ctx, r.prefix+"sizes", k).Int64()
	pipe := r.c.TxPipeline()
	pipe.Del(ctx, k)
	pipe.ZRem(ctx, r.prefix+"lru", k)
	pipe.HDel(ctx, r.prefix+"sizes", k)
	pipe.DecrBy(ctx, r.prefix+"bytes", n)
	_, err := pipe.Exec(ctx)
	return r.result(err)
}

// Close closes the client's connections.
func (r *Redis) Close() error { return r.c.Close() }
