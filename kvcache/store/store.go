// Package store keeps encoded KV chunks in tiers below the block pool —
// host memory, a local directory, a Redis server — so that a cache outlives
// its process, outgrows its RAM, and is shared between replicas.
//
// A Tier stores opaque values by key. Store stacks tiers, fastest first:
// Get tries each in turn and copies what a slower tier had into the faster
// ones; Spill hands writing to a goroutine of its own through a bounded
// queue, so that the caller (the scheduler, between decode steps) never
// waits on I/O and a full queue drops work instead of blocking.
//
// Every value is sealed before it reaches a tier: a header with its length
// and a CRC-32C over the key and the payload. A value that is truncated,
// damaged, or stored under another key fails the check on Get, is deleted
// from that tier, counted, and treated as a miss, so the caller computes
// it again; it is never returned.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is returned by Tier.Get for a key the tier does not hold.
var ErrNotFound = errors.New("store: not found")

// Tier is one level of storage for sealed values. Implementations are safe
// for concurrent use.
type Tier interface {
	// Name names the tier in metrics and logs: memory, disk or redis.
	Name() string
	// Get returns the value stored under key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Has reports whether the tier holds key.
	Has(ctx context.Context, key string) (bool, error)
	// Put stores val under key, replacing any value there. The tier may
	// evict other values to stay within its size cap.
	Put(ctx context.Context, key string, val []byte) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Close releases the tier's resources.
	Close() error
}

// Observer receives a store's events, for metrics. Its methods must return
// quickly; they run on the goroutine that caused the event.
type Observer interface {
	// Lookup reports a Get against one tier: whether it found the key, the
	// bytes read and how long it took.
	Lookup(tier string, hit bool, bytes int, d time.Duration)
	// Wrote reports a value written to a tier.
	Wrote(tier string, bytes int)
	// Failed reports an operation that failed for a reason other than a
	// missing key (the tier is down, slow, or full).
	Failed(tier, op string)
	// Corrupt reports a value that failed its check and was deleted.
	Corrupt(tier string)
	// Dropped reports spill work dropped because the queue was full.
	Dropped()
}

// TierStats counts one tier's traffic since the store was made.
type TierStats struct {
	Name                     string
	Hits, Misses             int64
	BytesRead, BytesWritten  int64
	Errors, Corrupt, Deleted int64
}

// Options configures a Store.
type Options struct {
	// Tiers, fastest first.
	Tiers []Tier
	// QueueSize is the most spill jobs waiting to be written; 16 if 0.
	QueueSize int
	// Timeout bounds each tier operation; 2s if 0. A Redis tier also has
	// its own, shorter, network timeouts.
	Timeout time.Duration
	// Observer receives events; none if nil.
	Observer Observer
	// Logger logs failures; slog.Default() if nil.
	Logger *slog.Logger
}

// Store stacks tiers. It is safe for concurrent use.
type Store struct {
	tiers   []Tier
	timeout time.Duration
	obs     Observer
	log     *slog.Logger

	stats   []tierCounters
	dropped atomic.Int64

	mu      sync.Mutex // guards closed and sends on jobs
	closed  bool
	jobs    chan Job
	pending sync.WaitGroup
	done    chan struct{}
}

type tierCounters struct {
	hits, misses, read, written, errors, corrupt, deleted atomic.Int64
}

// Job is spill work run on the store's writer goroutine; it writes
// through w.
type Job func(w *Writer)

// Writer writes values for a Job.
type Writer struct {
	s    *Store
	ctx  context.Context
	upTo int // write tiers [0, upTo)
}

// New returns a store over opts.Tiers and starts its writer goroutine.
// Close stops it.
func New(opts Options) *Store {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 16
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		tiers: opts.Tiers, timeout: opts.Timeout, obs: opts.Observer, log: opts.Logger,
		stats: make([]tierCounters, len(opts.Tiers)),
		jobs:  make(chan Job, opts.QueueSize),
		done:  make(chan struct{}),
	}
	go s.write()
	return s
}

// Tiers returns the tiers' names, fastest first.
func (s *Store) Tiers() []string {
	names := make([]string, len(s.tiers))
	for i, t := range s.tiers {
		names[i] = t.Name()
	}
	return names
}

// Stats returns each tier's counters, fastest first.
func (s *Store) Stats() []TierStats {
	out := make([]TierStats, len(s.tiers))
	for i, t := range s.tiers {
		c := &s.stats[i]
		out[i] = TierStats{Name: t.Name(), Hits: c.hits.Load(), Misses: c.misses.Load(), BytesRead: c.read.Load(),
			BytesWritten: c.written.Load(), Errors: c.errors.Load(), Corrupt: c.corrupt.Load(), Deleted: c.deleted.Load()}
	}
	return out
}

// Dropped returns the spill jobs dropped because the queue was full.
func (s *Store) Dropped() int64 { return s.dropped.Load() }

// Get returns the payload stored under key in the fastest tier that holds
// an intact copy, and that tier's index. A copy that fails its check is
// deleted and skipped; a tier that fails is skipped (and counted). A hit
// below the first tier is copied into the tiers above it by the writer
// goroutine. With no intact copy anywhere, Get returns ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, int, error) {
	for i, t := range s.tiers {
		tctx, cancel := context.WithTimeout(ctx, s.timeout)
		start := time.Now()
		raw, err := t.Get(tctx, key)
		cancel()
		d := time.Since(start)
		c := &s.stats[i]
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				s.failed(i, "get", err)
			}
			c.misses.Add(1)
			s.observe(t.Name(), false, 0, d)
			continue
		}
		payload, err := open(key, raw)
		if err != nil {
			c.corrupt.Add(1)
			c.misses.Add(1)
			if s.obs != nil {
				s.obs.Corrupt(t.Name())
			}
			s.log.Warn("kv store: damaged entry deleted; it will be recomputed", "tier", t.Name(), "key", key, "err", err)
			dctx, cancel := context.WithTimeout(ctx, s.timeout)
			if err := t.Delete(dctx, key); err != nil {
				s.failed(i, "delete", err)
			}
			cancel()
			s.observe(t.Name(), false, 0, d)
			continue
		}
		c.hits.Add(1)
		c.read.Add(int64(len(raw)))
		s.observe(t.Name(), true, len(raw), d)
		if i > 0 {
			s.Spill(func(w *Writer) {
				w.upTo = i
				w.Put(key, payload)
			})
		}
		return payload, i, nil
	}
	return nil, -1, ErrNotFound
}

// Has reports whether every tier holds key. It does not check the value:
// Get does.
func (s *Store) Has(ctx context.Context, key string) bool {
	for i, t := range s.tiers {
		tctx, cancel := context.WithTimeout(ctx, s.timeout)
		ok, err := t.Has(tctx, key)
		cancel()
		if err != nil {
			s.failed(i, "has", err)
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

// Invalidate deletes key from every tier: its payload passed the check but
// cannot be used (it does not decode, or decodes to the wrong shape).
func (s *Store) Invalidate(ctx context.Context, key string) {
	for i, t := range s.tiers {
		tctx, cancel := context.WithTimeout(ctx, s.timeout)
		if err := t.Delete(tctx, key); err != nil {
			s.failed(i, "delete", err)
		} else {
			s.stats[i].deleted.Add(1)
		}
		cancel()
	}
}

// Spill queues a job for the writer goroutine and reports whether it was
// queued: with the queue full (or the store closed) the job is dropped and
// counted, and Spill returns at once.
func (s *Store) Spill(job Job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.pending.Add(1)
	select {
	case s.jobs <- job:
		return true
	default:
		s.pending.Done()
		s.dropped.Add(1)
		if s.obs != nil {
			s.obs.Dropped()
		}
		return false
	}
}

// Wait blocks until every queued job has run.
func (s *Store) Wait() { s.pending.Wait() }

// Close runs the jobs already queued, stops the writer and closes the
// tiers.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.jobs)
	}
	s.mu.Unlock()
	<-s.done
	var errs []error
	for _, t := range s.tiers {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

func (s *Store) write() {
	defer close(s.done)
	for job := range s.jobs {
		job(&Writer{s: s, ctx: context.Background(), upTo: len(s.tiers)})
		s.pending.Done()
	}
}

// Has reports whether every tier the writer writes holds key.
func (w *Writer) Has(key string) bool {
	for i, t := range w.s.tiers[:w.upTo] {
		ctx, cancel := context.WithTimeout(w.ctx, w.s.timeout)
		ok, err := t.Has(ctx, key)
		cancel()
		if err != nil {
			w.s.failed(i, "has", err)
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

// Put seals payload and writes it under key to the writer's tiers; a tier
// that fails is counted and skipped.
func (w *Writer) Put(key string, payload []byte) {
	val := seal(key, payload)
	for i, t := range w.s.tiers[:w.upTo] {
		ctx, cancel := context.WithTimeout(w.ctx, w.s.timeout)
		err := t.Put(ctx, key, val)
		cancel()
		if err != nil {
			w.s.failed(i, "put", err)
			continue
		}
		w.s.stats[i].written.Add(int64(len(val)))
		if w.s.obs != nil {
			w.s.obs.Wrote(t.Name(), len(val))
		}
	}
}

func (s *Store) observe(tier string, hit bool, bytes int, d time.Duration) {
	if s.obs != nil {
		s.obs.Lookup(tier, hit, bytes, d)
	}
}

func (s *Store) failed(i int, op string, err error) {
	s.stats[i].errors.Add(1)
	name := s.tiers[i].Name()
	if s.obs != nil {
		s.obs.Failed(name, op)
	}
	if errors.Is(err, ErrUnavailable) {
		return // the tier logged when it went down
	}
	s.log.Warn("kv store: tier failed; continuing without it", "tier", name, "op", op, "err", err)
}

// ErrUnavailable is returned by a tier that is known to be down and is not
// tried again until its back-off ends.
var ErrUnavailable = errors.New("store: tier unavailable")

// The seal: magic, payload length, CRC-32C of key and payload, payload.
var sealMagic = [4]byte{'K', 'V', 'S', '1'}

const sealHeader = 4 + 8 + 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(key string, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte(key))
	return crc32.Update(c, castagnoli, payload)
}

// seal wraps payload for storage under key.
func seal(key string, payload []byte) []byte {
	out := make([]byte, sealHeader, sealHeader+len(payload))
	copy(out, sealMagic[:])
	binary.LittleEndian.PutUint64(out[4:], uint64(len(payload)))
	binary.LittleEndian.PutUint32(out[12:], checksum(key, payload))
	return append(out, payload...)
}

// open checks a sealed value read under key and returns its payload.
func open(key string, val []byte) ([]byte, error) {
	if len(val) < sealHeader || [4]byte(val[:4]) != sealMagic {
		return nil, fmt.Errorf("not a sealed entry (%d bytes)", len(val))
	}
	n := binary.LittleEndian.Uint64(val[4:])
	if n != uint64(len(val)-sealHeader) {
		return nil, fmt.Errorf("entry holds %d payload bytes, its header says %d (truncated)", len(val)-sealHeader, n)
	}
	payload := val[sealHeader:]
	if got, want := checksum(key, payload), binary.LittleEndian.Uint32(val[12:]); got != want {
		return nil, fmt.Errorf("checksum %08x, header says %08x", got, want)
	}
	return payload, nil
}
