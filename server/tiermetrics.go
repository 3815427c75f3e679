package server

import (
	"time"

	"github.com/kvserve/kvserve/internal/metric"
	"github.com/kvserve/kvserve/kvcache/store"
)

// tierMetrics are the KV store's metrics, per tier (memory, disk, redis).
type tierMetrics struct {
	hits, misses, read, written *metric.CounterVec
	corrupt                     *metric.CounterVec
	errors                      *metric.CounterVec
	load                        *metric.HistogramVec
	dropped                     *metric.Counter
}

// TierObserver returns a store.Observer that records the KV store's
// traffic on the server's registry, for the named tiers:
// kvserve_kv_tier_{hits,misses,corrupt}_total{tier},
// kvserve_kv_tier_{read,written}_bytes_total{tier},
// kvserve_kv_tier_errors_total{tier,op}, the histogram
// kvserve_kv_tier_load_seconds{tier,result} and
// kvserve_kv_spill_dropped_total. Call it once.
func (m *Metrics) TierObserver(tiers []string) store.Observer {
	vec := func(name, help string, labels ...string) *metric.CounterVec {
		return metric.NewCounterVec(metric.CounterOpts{Namespace: "kvserve", Name: name, Help: help}, labels)
	}
	t := &tierMetrics{
		hits:    vec("kv_tier_hits_total", "KV chunks found in a tier of the store.", "tier"),
		misses:  vec("kv_tier_misses_total", "KV chunk lookups a tier could not answer (absent, damaged, or the tier failed).", "tier"),
		read:    vec("kv_tier_read_bytes_total", "Bytes of KV chunks read from a tier.", "tier"),
		written: vec("kv_tier_written_bytes_total", "Bytes of KV chunks written to a tier.", "tier"),
		corrupt: vec("kv_tier_corrupt_total", "KV chunks that failed their checksum, deleted and recomputed.", "tier"),
		errors:  vec("kv_tier_errors_total", "Tier operations that failed (server down or slow, disk full); the request recomputes.", "tier", "op"),
		load: metric.NewHistogramVec(metric.HistogramOpts{Namespace: "kvserve", Name: "kv_tier_load_seconds",
			Help: "Time of one KV chunk lookup in a tier.", Buckets: metric.ExponentialBuckets(0.0001, 2, 16)}, []string{"tier", "result"}),
		dropped: metric.NewCounter(metric.CounterOpts{Namespace: "kvserve", Name: "kv_spill_dropped_total",
			Help: "Spill jobs dropped because the store's write queue was full."}),
	}
	for _, name := range tiers { // every series from zero
		for _, v := range []*metric.CounterVec{t.hits, t.misses, t.read, t.written, t.corrupt} {
			v.WithLabelValues(name)
		}
	}
	m.reg.MustRegister(t.hits, t.misses, t.read, t.written, t.corrupt, t.errors, t.load, t.dropped)
	return t
}

func (t *tierMetrics) Lookup(tier string, hit bool, bytes int, d time.Duration) {
	result := "miss"
	if hit {
		result = "hit"
		t.hits.WithLabelValues(tier).Inc()
		t.read.WithLabelValues(tier).Add(float64(bytes))
	} else {
		t.misses.WithLabelValues(tier).Inc()
	}
	t.load.WithLabelValues(tier, result).Observe(d.Seconds())
}

func (t *tierMetrics) Wrote(tier string, bytes int) {
	t.written.WithLabelValues(tier).Add(float64(bytes))
}
func (t *tierMetrics) Failed(tier, op string) { t.errors.WithLabelValues(tier, op).Inc() }
func (t *tierMetrics) Corrupt(tier string)    { t.corrupt.WithLabelValues(tier).Inc() }
func (t *tierMetrics) Dropped()               { t.dropped.Inc() }
