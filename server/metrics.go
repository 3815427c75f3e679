package server

import (
	"net/http"
	"time"

	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/internal/metric"
	kvchunk "github.com/kvserve/kvserve/kvcache/chunk"
)

// Metrics collects the server's Prometheus metrics on a registry of its
// own; every series carries the label model_name. It is the scheduler's engine.Observer (pass it in
// engine.SchedulerConfig) and reads the scheduler's gauges when scraped.
type Metrics struct {
	reg *metric.Registry

	ttft, itl, queueWait, step *metric.Histogram
	promptTokens, cachedTokens *metric.Counter
	prefillTokens, genTokens   *metric.Counter
	finished                   *metric.CounterVec
	requests                   *metric.CounterVec

	// Per request, observed when its answer is written.
	e2e, prefillTime, decodeTime      *metric.Histogram
	promptLength, generationLength    *metric.Histogram
	pressRequests                     *metric.CounterVec
	pressBytesBefore, pressBytesAfter *metric.CounterVec
}

// tokenBuckets span 1 to about 10⁵ tokens in 1-2-5 steps, as vLLM's
// length histograms do.
var tokenBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}

// latencyBuckets span 1 ms to about 65 s.
var latencyBuckets = metric.ExponentialBuckets(0.001, 2, 17)

// NewMetrics returns metrics registered on a new registry, with the Go
// runtime's and the process's collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: metric.NewRegistry(nil)}
	hist := func(name, help string) *metric.Histogram {
		return metric.NewHistogram(metric.HistogramOpts{Namespace: "kvserve", Name: name, Help: help, Buckets: latencyBuckets})
	}
	counter := func(name, help string) *metric.Counter {
		return metric.NewCounter(metric.CounterOpts{Namespace: "kvserve", Name: name, Help: help})
	}
	m.ttft = hist("time_to_first_token_seconds", "Time from a request's arrival to its first generated token.")
	m.itl = hist("inter_token_latency_seconds", "Time between two generated tokens of one sequence.")
	m.queueWait = hist("queue_wait_seconds", "Time a request waited in the queue before joining the batch.")
	m.step = hist("step_seconds", "Duration of one batched forward pass.")
	m.promptTokens = counter("prompt_tokens_total", "Prompt tokens of admitted requests.")
	m.cachedTokens = counter("prompt_cached_tokens_total", "Prompt tokens found in the KV cache (prefix hits).")
	m.prefillTokens = counter("prefill_tokens_total", "Prompt tokens computed by the model.")
	m.genTokens = counter("generation_tokens_total", "Tokens sampled; rate() of it is the generation throughput in tokens/s.")
	m.finished = metric.NewCounterVec(metric.CounterOpts{Namespace: "kvserve", Name: "finished_sequences_total", Help: "Sequences (choices) that ended, by reason."}, []string{"reason"})
	m.requests = metric.NewCounterVec(metric.CounterOpts{Namespace: "kvserve", Name: "http_requests_total", Help: "HTTP requests by path and status code."}, []string{"path", "code"})
	m.e2e = hist("e2e_request_latency_seconds", "Time from a generation request's submission to its last token.")
	m.prefillTime = hist("request_prefill_time_seconds", "Time from a generation request's submission to its first token (queue and prompt).")
	m.decodeTime = hist("request_decode_time_seconds", "Time from a generation request's first token to its last.")
	lengths := func(name, help string) *metric.Histogram {
		return metric.NewHistogram(metric.HistogramOpts{Namespace: "kvserve", Name: name, Help: help, Buckets: tokenBuckets})
	}
	m.promptLength = lengths("request_prompt_tokens", "Prompt length of each generation request, in tokens.")
	m.generationLength = lengths("request_generation_tokens", "Tokens generated for each request, over all its choices.")
	m.pressRequests = metric.NewCounterVec(metric.CounterOpts{Namespace: "kvserve", Name: "kv_press_requests_total", Help: "Requests whose prompt KV was compressed, by press."}, []string{"press"})
	m.pressBytesBefore = metric.NewCounterVec(metric.CounterOpts{Namespace: "kvserve", Name: "kv_press_bytes_before_total", Help: "Prompt KV bytes before compression, summed over requests, by press."}, []string{"press"})
	m.pressBytesAfter = metric.NewCounterVec(metric.CounterOpts{Namespace: "kvserve", Name: "kv_press_bytes_after_total", Help: "Prompt KV bytes after compression, summed over requests, by press."}, []string{"press"})
	m.reg.MustRegister(m.ttft, m.itl, m.queueWait, m.step, m.promptTokens, m.cachedTokens, m.prefillTokens, m.genTokens, m.finished, m.requests,
		m.e2e, m.prefillTime, m.decodeTime, m.promptLength, m.generationLength, m.pressRequests, m.pressBytesBefore, m.pressBytesAfter,
		metric.NewGoCollector(), metric.NewProcessCollector())
	return m
}

// Registry returns the registry the metrics live on.
func (m *Metrics) Registry() *metric.Registry { return m.reg }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler { return metric.Handler(m.reg) }

// SetModel names the served model: the value of every series' model_name.
func (m *Metrics) SetModel(name string) { m.reg.SetConstant("model_name", name) }

// watch registers the gauges read from the scheduler at each scrape.
func (m *Metrics) watch(s *engine.Scheduler) {
	gauge := func(name, help string, f func(engine.SchedulerStats) float64) metric.Collector {
		return metric.NewGaugeFunc(metric.GaugeOpts{Namespace: "kvserve", Name: name, Help: help}, func() float64 { return f(s.Stats()) })
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
		gauge("kv_usage_ratio", "Share of the KV budget in use, 0 to 1 (vLLM's kv_cache_usage_perc; 0 without a budget).", func(st engine.SchedulerStats) float64 {
			if st.KV.Capacity <= 0 {
				return 0
			}
			return float64(st.KV.UsedBytes) / float64(st.KV.Capacity)
		}),
		gauge("prefix_cached_tokens", "Distinct tokens the prefix cache keeps for reuse.", func(st engine.SchedulerStats) float64 { return float64(st.KV.PrefixTokens) }),
		metric.NewCounterFunc(metric.CounterOpts{Namespace: "kvserve", Name: "prefix_evictions_total", Help: "Kept prefix caches evicted to make room."},
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

// request observes one finished generation request.
func (m *Metrics) request(g *genRecord) {
	m.e2e.Observe(g.end.Sub(g.submitted).Seconds())
	if !g.first.IsZero() {
		m.prefillTime.Observe(g.first.Sub(g.submitted).Seconds())
		m.decodeTime.Observe(g.end.Sub(g.first).Seconds())
	}
	m.promptLength.Observe(float64(g.usage.PromptTokens))
	m.generationLength.Observe(float64(g.usage.CompletionTokens))
	if g.press != "" {
		m.pressRequests.WithLabelValues(g.press).Inc()
		m.pressBytesBefore.WithLabelValues(g.press).Add(float64(g.usage.KVBytesBeforePress))
		m.pressBytesAfter.WithLabelValues(g.press).Add(float64(g.usage.KVBytesAfterPress))
	}
}

// watchChunks registers the chunk cache's counters, read at each scrape.
func (m *Metrics) watchChunks(b *blend.Blender) {
	counter := func(name, help string, f func(kvchunk.Stats) float64) metric.Collector {
		return metric.NewCounterFunc(metric.CounterOpts{Namespace: "kvserve", Name: name, Help: help}, func() float64 { return f(b.Chunks.Stats()) })
	}
	m.reg.MustRegister(
		counter("chunk_hits_total", "Documents whose KV was found in the chunk cache.", func(s kvchunk.Stats) float64 { return float64(s.Hits) }),
		counter("chunk_misses_total", "Documents computed because the chunk cache lacked them.", func(s kvchunk.Stats) float64 { return float64(s.Misses) }),
		counter("chunk_hit_tokens_total", "Tokens of the documents found in the chunk cache.", func(s kvchunk.Stats) float64 { return float64(s.HitTokens) }),
		metric.NewCounterFunc(metric.CounterOpts{Namespace: "kvserve", Name: "chunk_recomputed_tokens_total", Help: "Reused document tokens recomputed by the reuse method (CacheBlend's deviating tokens)."},
			func() float64 { return float64(b.RecomputedTokens()) }),
		metric.NewGaugeFunc(metric.GaugeOpts{Namespace: "kvserve", Name: "chunk_cached_documents", Help: "Documents held in the chunk cache."},
			func() float64 { return float64(b.Chunks.Stats().Entries) }),
	)
}
