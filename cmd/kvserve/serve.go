package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/chunk"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/retrieve"
	"github.com/kvserve/kvserve/semcache/embed"
	"github.com/kvserve/kvserve/server"
)

// serveOptions are the flags of kvserve serve.
type serveOptions struct {
	models           modelList
	host, name       string
	ctxSize          int
	port             int
	maxBatch, queue  int
	prefill, threads int
	numerics         string
	kvMemory         int64
	kvFormat         kvcache.Format
	shutdown         time.Duration
	logJSON          bool
	logLevel         slog.Level
	statsEvery       time.Duration
	prefixCache      bool
	press            string
	pressRatio       float64
	chatTemplate     string
	apiKeys          []string // never logged
	metricsAuth      bool
	limits           serveLimits // hostile-input bounds (serve_limits.go)
	reuse            string      // how documents' cached KV is reused (blend)
	tiers            tierOptions
	semcache         *semcacheOptions
	retrieval        string
	retrievalBudget  retrieve.Budget
	retrievalCold    bool
	embedModel       string      // a sentence-encoder folder served on /v1/embeddings
	encoder          *embed.BERT // loaded from embedModel; the first model's server serves it
	cpuProfile       string      // a file the CPU profile of the whole run goes to
}

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "[--model DIR] [--host H] [--port P] [--max-batch N] [--kv-memory BYTES] [--queue N] [flags]",
		"Serves the model over an OpenAI-compatible HTTP API: /v1/chat/completions,\n"+
			"/v1/completions (whole or streamed as server-sent events), /v1/embeddings,\n"+
			"/v1/models, /tokenize, /detokenize, /health and Prometheus /metrics;\n"+
			"logprobs, penalties, logit_bias, JSON and JSON Schema output (constrained\n"+
			"decoding) and tool calls as OpenAI's API has them. Requests are batched\n"+
			"continuously: up to --max-batch sequences decode together while new prompts\n"+
			"are computed in chunks of --prefill-chunk tokens. Beyond --queue waiting\n"+
			"requests the server answers 429. Finished sequences stay cached in a radix\n"+
			"tree (--prefix-cache) so that a prompt starting the same way — the next\n"+
			"turn of a conversation — reuses their KV; tenants (the cache_salt field or\n"+
			"the API key) never share it. With --api-key (or --api-key-file, or\n"+
			"$KVSERVE_API_KEY) every route but /health (and /metrics, unless\n"+
			"--metrics-auth) needs \"Authorization: Bearer KEY\"; others get 401.\n"+
			"A base model (no chat template) serves /v1/completions; chat needs\n"+
			"--chat-template FILE. --press compresses each prompt's KV once it\n"+
			"is computed (requests choose their own with the kv_press and\n"+
			"kv_press_ratio fields). SIGINT or SIGTERM stops it gracefully:\n"+
			"running requests get --shutdown-timeout to finish.", stderr)
	var o serveOptions
	fs.Var(&o.models, "model", "Hugging Face model folder or .gguf file, or NAME=PATH to serve it as NAME; repeat to serve several models, routed by the request's model field (default: the bundled tinychat)")
	fs.IntVar(&o.ctxSize, "ctx-size", 0, "cap every model's context at this many tokens (0: the model's own)")
	fs.StringVar(&o.host, "host", "127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
	fs.IntVar(&o.port, "port", 8000, "port to listen on (0: any free port)")
	fs.StringVar(&o.name, "served-model-name", "", "model id clients use (default: the model folder's name)")
	fs.IntVar(&o.maxBatch, "max-batch", 8, "most sequences decoded together")
	fs.IntVar(&o.queue, "queue", 64, "most requests waiting for a place in the batch")
	fs.IntVar(&o.prefill, "prefill-chunk", 0, "most prompt tokens computed per step, over all new prompts (0: 256)")
	kvMem := fs.String("kv-memory", "4GiB", "KV-cache memory budget, e.g. 2GiB, 512MiB or bytes")
	kvFormat := fs.String("kv-format", "f32", "how the KV cache stores keys and values: f32 or bf16")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", 30*time.Second, "how long running requests may finish after SIGINT or SIGTERM")
	fs.IntVar(&o.threads, "threads", 0, "worker threads (0: one per CPU)")
	fs.StringVar(&o.numerics, "numerics", "auto", numericsUsage)
	fs.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text (durations in seconds)")
	logLevel := fs.String("log-level", "info", "least severe log level written: debug, info, warn or error (4xx answers log at warn, 5xx at error)")
	fs.DurationVar(&o.statsEvery, "stats-interval", 10*time.Second, "how often a busy server logs a stats line (running, waiting, tokens/s, KV use, prefix hits); 0 turns it off")
	fs.BoolVar(&o.prefixCache, "prefix-cache", true, "keep finished sequences' KV for reuse by later prompts with the same prefix and tenant (cache_salt or API key)")
	fs.StringVar(&o.reuse, "reuse", "cacheblend", "how the KV of a request's documents (the \"documents\" extension of chat completions) is reused from the chunk cache: full, naive, cacheblend, cacheblend-deviation, cachecraft or ape (requests override it with kv_reuse)")
	fs.StringVar(&o.press, "press", "none", "KV-cache press applied to every prompt once computed, e.g. keydiff, snapkv or keydiff+kivi4 (requests override it with kv_press); pressed prompts are neither taken from nor kept in the prefix cache")
	fs.Float64Var(&o.pressRatio, "press-ratio", 0.5, "fraction of each prompt's KV the press removes (requests override it with kv_press_ratio)")
	fs.StringVar(&o.chatTemplate, "chat-template", "", chatTemplateUsage)
	keyFlags := addAPIKeyFlags(fs)
	o.limits.flags(fs)
	addTierFlags(fs, &o.tiers)
	o.semcache = addSemcacheFlags(fs)
	fs.StringVar(&o.embedModel, "embed-model", "", "a BERT-family sentence-encoder folder (as sentence-transformers saves one) that /v1/embeddings serves to requests whose model is the folder's name, next to the served model; --semcache-embedder bert:DIR with the same DIR shares it")
	rf := addRetrievalFlags(fs, false)
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile (go tool pprof) of the whole run to this file, complete once the server stops")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.tiers.parse(); err != nil {
		return err
	}
	if err := o.semcache.check(); err != nil {
		return err
	}
	if err := o.setRetrieval(rf); err != nil {
		return err
	}
	var err error
	if o.apiKeys, err = keyFlags.resolve(os.Getenv); err != nil {
		return usageError{err.Error()}
	}
	o.metricsAuth = *keyFlags.metricsAuth
	if err := o.limits.check(); err != nil {
		return err
	}
	if _, err := blend.Parse(o.reuse, 0); err != nil {
		return usageError{"--reuse: " + err.Error()}
	}
	if o.kvMemory, err = parseBytes(*kvMem); err != nil {
		return usageError{"--kv-memory: " + err.Error()}
	}
	if o.kvFormat, err = kvcache.ParseFormat(*kvFormat); err != nil {
		return usageError{"--kv-format: " + err.Error()}
	}
	if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level %q: use debug, info, warn or error", *logLevel)}
	}
	switch {
	case o.port < 0 || o.port > 65535:
		return usageError{fmt.Sprintf("--port %d outside [0, 65535]", o.port)}
	case o.maxBatch < 1:
		return usageError{"--max-batch must be ≥ 1"}
	case o.queue < 1:
		return usageError{"--queue must be ≥ 1"}
	case o.prefill < 0:
		return usageError{"--prefill-chunk must be ≥ 0"}
	case o.ctxSize < 0:
		return usageError{"--ctx-size must be ≥ 0"}
	case len(o.models) > 1 && o.name != "":
		return usageError{"--served-model-name names one model; with several --model flags, name each as NAME=PATH"}
	}
	if o.press != "none" && o.press != "" {
		if _, err := press.Parse(o.press, o.pressRatio); err != nil {
			return usageError{"--press: " + err.Error()}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hopts := &slog.HandlerOptions{Level: o.logLevel}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if o.logJSON {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	return serve(ctx, o, slog.New(h), nil)
}

// serve runs the server until ctx ends, then shuts it down gracefully.
// ready, if set, is called with the listening address.
func serve(ctx context.Context, o serveOptions, log *slog.Logger, ready func(addr string)) error {
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	pool := compute.NewPool(o.threads)
	defer pool.Close()
	if o.embedModel != "" {
		enc, err := embed.LoadBERT(o.embedModel)
		if err != nil {
			return fmt.Errorf("--embed-model: %w", err)
		}
		o.encoder = enc
		log.Info("sentence encoder on /v1/embeddings", "model", encoderName(o.embedModel), "dir", o.embedModel)
	}
	specs := o.models
	if len(specs) == 0 {
		specs = []modelSpec{{}} // the bundled model
	}
	if len(specs) == 1 && o.name != "" {
		specs[0].name = o.name
	}
	var models []*servedModel
	defer func() {
		for _, m := range models {
			m.close()
		}
	}()
	for i, spec := range specs {
		mo := o
		if i > 0 {
			mo.encoder = nil // served once, by the first model's server
		}
		// Each model gets an equal share of the KV memory budget.
		m, err := openServed(ctx, spec, mo, pool, log, o.kvMemory/int64(len(specs)))
		if err != nil {
			return err
		}
		models = append(models, m)
	}
	var handler http.Handler = models[0].api
	drain := models[0].api.Drain
	if len(models) > 1 {
		apis := make([]*server.Server, len(models))
		for i, m := range models {
			apis[i] = m.api
		}
		rt, err := server.NewRouter(apis...)
		if err != nil {
			return err
		}
		handler, drain = rt, rt.Drain
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.host, strconv.Itoa(o.port)))
	if err != nil {
		return err
	}
	ln = server.LimitListener(ln, o.limits.maxConns)
	hs := &http.Server{Handler: handler, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	o.limits.server(hs)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	addr := ln.Addr().String()
	statsCtx, stopStats := context.WithCancel(ctx)
	defer stopStats()
	for _, m := range models {
		log.Info("serving", "url", "http://"+addr, "model", m.name, "path", m.b.Name, "context", m.b.ContextLength(),
			"max_batch", o.maxBatch, "queue", o.queue, "press", o.press, "kv_memory", o.kvMemory/int64(len(models)), "kv_format", o.kvFormat.String(),
			"prefix_cache", o.prefixCache, "threads", pool.Threads(), "api_keys", len(o.apiKeys), "metrics_auth", o.metricsAuth)
		warnOpen(log, m.b, o)
		go m.api.LogStats(statsCtx, o.statsEvery)
	}
	if ready != nil {
		ready(addr)
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing running requests", "timeout", o.shutdown)
	drain()
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdown)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("requests still running at the shutdown timeout; ending them with 503", "err", err)
		for _, m := range models {
			m.sched.Close() // ends them with an error: their handlers answer 503
		}
		// Let those answers reach their clients before the connections close.
		lctx, lcancel := context.WithTimeout(context.Background(), 2*time.Second)
		if hs.Shutdown(lctx) != nil {
			hs.Close()
		}
		lcancel()
	}
	<-served
	log.Info("stopped")
	return nil
}

// modelSpec is one --model value: a path (empty: the bundled model) and
// the name clients use for it (empty: the folder's or file's name).
type modelSpec struct{ name, path string }

// parseModelSpec reads NAME=PATH or PATH. A value that exists as a path is
// a path even if it holds "=".
func parseModelSpec(v string) modelSpec {
	if _, err := os.Stat(v); err == nil {
		return modelSpec{path: v}
	}
	if name, path, ok := strings.Cut(v, "="); ok && name != "" {
		return modelSpec{name: name, path: path}
	}
	return modelSpec{path: v}
}

// modelList is the repeatable --model flag.
type modelList []modelSpec

func (l *modelList) String() string {
	var s []string
	for _, m := range *l {
		s = append(s, m.path)
	}
	return strings.Join(s, ",")
}

func (l *modelList) Set(v string) error {
	*l = append(*l, parseModelSpec(v))
	return nil
}

// servedModel is one model a server serves: its weights, scheduler and API.
type servedModel struct {
	name  string
	b     *engine.Bundle
	sched *engine.Scheduler
	api   *server.Server
	// closers run after the scheduler stops, before the model unloads.
	closers []func()
}

// openServed loads one model and starts its scheduler with its share of
// the KV budget.
func openServed(ctx context.Context, spec modelSpec, o serveOptions, pool *compute.Pool, log *slog.Logger, budget int64) (*servedModel, error) {
	b, err := engine.OpenWith(spec.path, pool, engine.Options{ChatTemplateFile: o.chatTemplate, ContextLength: o.ctxSize, Numerics: o.numerics})
	if err != nil {
		if spec.path != "" {
			return nil, fmt.Errorf("model %s: %w", spec.path, err)
		}
		return nil, err
	}
	metrics := server.NewMetrics()
	var cache engine.CacheAllocator = engine.NewPoolCache(b.Net, kvcache.PoolConfig{Budget: budget, Format: o.kvFormat})
	if o.prefixCache {
		cache = engine.NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: budget, Format: o.kvFormat})
	}
	var closers []func()
	if o.tiers.any() {
		pc, ok := cache.(*engine.PrefixCache)
		if !ok {
			b.Close()
			return nil, usageError{"--kv-disk, --kv-redis and --kv-host-memory need the prefix cache (--prefix-cache)"}
		}
		tc, err := openTiers(&o.tiers, b, pc, o.kvFormat, metrics, log)
		if err != nil {
			b.Close()
			return nil, err
		}
		closers = append(closers, func() { tc.Store().Close() }) // after the scheduler: writes what is queued
		cache = tc
		log.Info("kv tiers", "model", b.Name, "tiers", tc.Store().Tiers(), "codec", o.tiers.level.String(), "chunk_tokens", o.tiers.chunk)
	}
	// Documents' KV lives in the same pool, under the same budget: the
	// allocator evicts kept documents once kept prefixes are gone.
	chunks := chunk.New(cache.(interface{ Pool() *kvcache.Pool }).Pool())
	cache = engine.ChunkCache{CacheAllocator: cache, Chunks: chunks}
	blender := &blend.Blender{Net: b.Net, Chunks: chunks, ModelName: b.Name}
	sched := engine.NewScheduler(b, engine.SchedulerConfig{
		MaxBatch: o.maxBatch, PrefillTokens: o.prefill, QueueSize: o.queue,
		Cache: cache, Observer: metrics, Logger: log,
	})
	sc, scClose, err := o.semcache.open(ctx, b, o.semcache.sharedEncoder(o.encoder, o.embedModel), spec.name, o.tiers.redis, o.tiers.redisTimeout, log)
	if err != nil {
		sched.Close()
		for _, c := range closers {
			c()
		}
		b.Close()
		return nil, err
	}
	closers = append(closers, scClose)
	api := server.New(b, sched, o.limits.apply(server.Config{ModelName: spec.name, Metrics: metrics, Logger: log, Press: o.press, PressRatio: o.pressRatio,
		APIKeys: o.apiKeys, MetricsAuth: o.metricsAuth, Blender: blender, Reuse: o.reuse, SemCache: sc, Encoder: encoder(o.encoder), EncoderName: encoderName(o.embedModel),
		Retrieval: o.retrieval, RetrievalBudget: o.retrievalBudget, RetrievalCold: o.retrievalCold}))
	return &servedModel{name: api.ModelName(), b: b, sched: sched, api: api, closers: closers}, nil
}

// close stops the scheduler and unloads the model.
func (m *servedModel) close() {
	m.sched.Close()
	for _, c := range m.closers {
		c()
	}
	m.b.Close()
}

// cutContext cuts a record's context of about total tokens to about want
// tokens, in proportion to its characters, at a line or word boundary.
func cutContext(ctx string, want, total int) string {
	if want <= 0 || total <= want {
		return ctx
	}
	cut := len(ctx) * want / total
	if i := strings.LastIndexByte(ctx[:cut], '\n'); i > cut/2 {
		return ctx[:i]
	}
	if i := strings.LastIndexByte(ctx[:cut], ' '); i > 0 {
		return ctx[:i]
	}
	return ctx[:cut]
}

// parseBytes reads a size: a number of bytes, optionally with a unit (K,
// M, G, T for powers of 1000; KiB, MiB, GiB, TiB for powers of 1024).
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (e.g. 4GiB, 512MiB, 1e9)", s)
	}
	return int64(v * mult), nil
}

func benchServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench serve", "--data FILE.jsonl [--url URL] [--concurrency N] [flags]",
		"Loads a running OpenAI-compatible server (kvserve serve, llama-server, vLLM)\n"+
			"with multi-turn conversations over each record's shared context: turn k\n"+
			"sends the system prompt, the context with the first question, and the earlier\n"+
			"questions with their reference answers, streamed, greedy. --concurrency\n"+
			"clients each replay one conversation at a time; --cancel-rate of the answers\n"+
			"are abandoned midway (ending that conversation). Prints TTFT, inter-token\n"+
			"latency, generated tokens and the prefix hit rate the server reports\n"+
			"(usage.prompt_tokens_details.cached_tokens), per turn.", stderr)
	url := fs.String("url", "http://127.0.0.1:8000", "the server's base URL")
	modelName := fs.String("model", "", "model name to send (default: none)")
	data := fs.String("data", "", "JSONL task set (e.g. bench/testdata/dev.jsonl)")
	tasks := fs.String("tasks", "", "comma-separated tasks (default: all)")
	lengths := fs.String("lengths", "", "comma-separated context lengths, e.g. 3500 (default: all)")
	convs := fs.Int("conversations", 16, "conversations to run (0: every matching record)")
	turns := fs.Int("turns", 0, "turns per conversation (0: all the record has)")
	contextTokens := fs.Int("context-tokens", 0, "cut each record's context to about this many tokens (0: whole), e.g. 500 of a 1000-token record")
	concurrency := fs.Int("concurrency", 8, "clients at once")
	maxTokens := fs.Int("max-tokens", 64, "max_tokens of each answer")
	ignoreEOS := fs.Bool("ignore-eos", false, "ask for exactly --max-tokens tokens (ignore_eos)")
	cancelRate := fs.Float64("cancel-rate", 0, "share of answers abandoned midway, 0…1")
	seed := fs.Uint64("seed", 1, "seed of the cancellations")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	apiKey := fs.String("api-key", "", "API key sent as \"Authorization: Bearer KEY\" (default: $"+apiKeyEnv+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *apiKey == "" {
		*apiKey = strings.TrimSpace(os.Getenv(apiKeyEnv))
	}
	switch {
	case *data == "":
		return usageError{"--data is required"}
	case *cancelRate < 0 || *cancelRate > 1:
		return usageError{"--cancel-rate must be in [0, 1]"}
	case *concurrency < 1:
		return usageError{"--concurrency must be ≥ 1"}
	case *contextTokens < 0:
		return usageError{"--context-tokens must be ≥ 0"}
	}
	recs, err := selectRecords(*data, *tasks, *lengths, 0)
	if err != nil {
		return err
	}
	if *convs > 0 && len(recs) > *convs {
		recs = recs[:*convs]
	}
	var conversations []bench.Conversation
	for i := range recs {
		recs[i].Context = cutContext(recs[i].Context, *contextTokens, recs[i].TargetTokens)
		c := bench.Conversation{ID: recs[i].ID}
		n := len(recs[i].Turns)
		if *turns > 0 {
			n = min(n, *turns)
		}
		for k := 1; k <= n; k++ {
			var msgs []bench.Message
			for _, m := range bench.TurnMessages(&recs[i], k) {
				msgs = append(msgs, bench.Message{Role: m.Role, Content: m.Content})
			}
			c.Turns = append(c.Turns, msgs)
		}
		conversations = append(conversations, c)
	}
	if err := probeServer(*url); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := bench.RunLoad(ctx, bench.LoadOptions{
		URL: *url, Model: *modelName, Conversations: conversations, Concurrency: *concurrency,
		MaxTokens: *maxTokens, IgnoreEOS: *ignoreEOS, CancelRate: *cancelRate, Seed: *seed, APIKey: *apiKey,
	})
	if rep == nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	if rep.Total.Completed == 0 {
		if err != nil {
			return fmt.Errorf("no request completed: %w", err)
		}
		return errors.New("no request completed")
	}
	fmt.Fprintf(stdout, "%s: %d conversations, concurrency %d, max_tokens %d, cancel rate %g\n", *url, len(conversations), *concurrency, *maxTokens, *cancelRate)
	rep.Table(stdout)
	return err
}

// probeServer checks that an OpenAI-compatible server answers at url
// before a load is sent to it.
func probeServer(url string) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(strings.TrimRight(url, "/") + "/v1/models")
	if err != nil {
		return fmt.Errorf("cannot reach a server at %s (%v): start one (kvserve serve) or point --url at it", url, err)
	}
	resp.Body.Close()
	return nil
}

// startCPUProfile profiles the process into path until the returned
// function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
