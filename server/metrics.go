package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/engine"
	kvchunk "github.com/kvserve/kvserve/kvcache/chunk"
)

// Metrics collects the server's Prometheus metrics on a registry of its
// own. It is the scheduler's engine.Observer (pass it in
// engine.SchedulerConfig) and reads the scheduler's gauges when scraped.
type Metrics struct {
	reg *prometheus.Registry

	ttft, itl, queueWait, step prometheus.Histogram
	promptTokens, cachedTokens prometheus.Counter
	prefillTokens, genTokens   prometheus.Counter
	finished                   *prometheus.CounterVec
	requests                   *prometheus.CounterVec
}

// latencyBuckets span 1 ms to about 65 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

// NewMetrics returns metrics registered on a new registry, with the Go
// runtime's and the process's collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "kvserve", Name: name, Help: help, Buckets: latencyBuckets})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kvserve", Name: name, Help: help})
	}
	m.ttft = hist("time_to_first_token_seconds", "Time from a request's arrival to its first generated token.")
	m.itl = hist("inter_token_latency_seconds", "Time between two generated tokens of one sequence.")
	m.queueWait = hist("queue_wait_seconds", "Time a request waited in the queue before joining the batch.")
	m.step = hist("step_seconds", "Duration of one batched forward pass.")
	m.promptTokens = counter("prompt_tokens_total", "Prompt tokens of admitted requests.")
	m.cachedTokens = counter("prompt_cached_tokens_total", "Prompt tokens found in the KV cache (prefix hits).")
	m.prefillTokens = counter("prefill_tokens_total", "Prompt tokens computed by the model.")
	m.genTokens = counter("generation_tokens_total", "Tokens sampled; rate() of it is the generation throughput in tokens/s.")
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kvserve", Name: "finished_sequences_total", Help: "Sequences (choices) that ended, by reason."}, []string{"reason"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kvserve", Name: "http_requests_total", Help: "HTTP requests by path and status code."}, []string{"path", "code"})
	m.reg.MustRegister(m.ttft, m.itl, m.queueWait, m.step, m.promptTokens, m.cachedTokens, m.prefillTokens, m.genTokens, m.finished, m.requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry the metrics live on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// watch registers the gauges read from the scheduler at each scrape.
func (m *Metrics) watch(s *engine.Scheduler) {
	gauge := func(name, help string, f func(engine.SchedulerStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvserve", Name: name, Help: help}, func() float64 { return f(s.Stats()) })
	}
	m.reg.MustRegister(
		gauge("queue_requests", "Requests waiting for a place in the batch.", func(st engine.SchedulerStats) float64 { return float64(st.Queued) }),
		gauge("running_sequences", "Sequences (choices) in the batch.", func(st engine.SchedulerStats) float64 { return float64(st.Running) }),
		gauge("kv_used_bytes", "Bytes of KV-cache blocks in use.", func(st engine.SchedulerStats) float64 { return float64(st.KV.UsedBytes) }),
		gauge("kv_free_bytes", "Bytes of the KV budget not in use (-1 without a budget).", func(st engine.SchedulerStats) float64 {
			if st.KV.Capacity <= 0 {
				return -1
			}
			return float64(st.KV.Capacity - st.KV.UsedBytes)
		}),
		gauge("kv_capacity_bytes", "The KV-cache memory budget (0: none).", func(st engine.SchedulerStats) float64 { return float64(st.KV.Capacity) }),
		gauge("kv_blocks_used", "KV-cache blocks in use.", func(st engine.SchedulerStats) float64 { return float64(st.KV.UsedBlocks) }),
		gauge("kv_blocks_free", "KV-cache blocks the budget still allows (-1 without a budget).", func(st engine.SchedulerStats) float64 { return float64(st.KV.FreeBlocks) }),
		gauge("prefix_hit_rate", "Share of prompt tokens found cached, since start.", func(st engine.SchedulerStats) float64 {
			if st.PromptTokens == 0 {
				return 0
			}
			return float64(st.CachedTokens) / float64(st.PromptTokens)
		}),
		gauge("prefix_cached_tokens", "Distinct tokens the prefix cache keeps for reuse.", func(st engine.SchedulerStats) float64 { return float64(st.KV.PrefixTokens) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kvserve", Name: "prefix_evictions_total", Help: "Kept prefix caches evicted to make room."},
			func() float64 { return float64(s.Stats().KV.PrefixEvictions) }),
	)
}

// Admitted implements engine.Observer.
func (m *Metrics) Admitted(wait time.Duration, prompt, cached int) {
	m.queueWait.Observe(wait.Seconds())
	m.promptTokens.Add(float64(prompt))
	m.cachedTokens.Add(float64(cached))
}

// FirstToken implements engine.Observer.
func (m *Metrics) FirstToken(d time.Duration) { m.ttft.Observe(d.Seconds()) }

// NextToken implements engine.Observer.
func (m *Metrics) NextToken(d time.Duration) { m.itl.Observe(d.Seconds()) }

// Step implements engine.Observer.
func (m *Metrics) Step(st engine.StepInfo) {
	m.step.Observe(st.Elapsed.Seconds())
	m.prefillTokens.Add(float64(st.PrefillTokens))
	m.genTokens.Add(float64(st.Sampled))
}

// Finished implements engine.Observer.
func (m *Metrics) Finished(reason engine.Finish, completion int) {
	m.finished.WithLabelValues(string(reason)).Inc()
}

// watchChunks registers the chunk cache's counters, read at each scrape.
func (m *Metrics) watchChunks(b *blend.Blender) {
	counter := func(name, help string, f func(kvchunk.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kvserve", Name: name, Help: help}, func() float64 { return f(b.Chunks.Stats()) })
	}
	m.reg.MustRegister(
		counter("chunk_hits_total", "Documents whose KV was found in the chunk cache.", func(s kvchunk.Stats) float64 { return float64(s.Hits) }),
		counter("chunk_misses_total", "Documents computed because the chunk cache lacked them.", func(s kvchunk.Stats) float64 { return float64(s.Misses) }),
		counter("chunk_hit_tokens_total", "Tokens of the documents found in the chunk cache.", func(s kvchunk.Stats) float64 { return float64(s.HitTokens) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "kvserve", Name: "chunk_recomputed_tokens_total", Help: "Reused document tokens recomputed by the reuse method (CacheBlend's deviating tokens)."},
			func() float64 { return float64(b.RecomputedTokens()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvserve", Name: "chunk_cached_documents", Help: "Documents held in the chunk cache."},
			func() float64 { return float64(b.Chunks.Stats().Entries) }),
	)
}
