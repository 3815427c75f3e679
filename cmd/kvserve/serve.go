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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/retrieve"
	"github.com/kvserve/kvserve/server"
)

// serveOptions are the flags of kvserve serve.
type serveOptions struct {
	model, host, name string
	port              int
	maxBatch, queue   int
	prefill, threads  int
	kvMemory          int64
	kvFormat          kvcache.Format
	shutdown          time.Duration
	logJSON           bool
	prefixCache       bool
	press             string
	pressRatio        float64
	retrieval         string
	retrievalBudget   retrieve.Budget
	retrievalCold     bool
}

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "[--model DIR] [--host H] [--port P] [--max-batch N] [--kv-memory BYTES] [--queue N] [flags]",
		"Serves the model over an OpenAI-compatible HTTP API: /v1/chat/completions,\n"+
			"/v1/completions (whole or streamed as server-sent events), /v1/embeddings,\n"+
			"/v1/models, /health and Prometheus /metrics. Requests are batched\n"+
			"continuously: up to --max-batch sequences decode together while new prompts\n"+
			"are computed in chunks of --prefill-chunk tokens. Beyond --queue waiting\n"+
			"requests the server answers 429. Finished sequences stay cached in a radix\n"+
			"tree (--prefix-cache) so that a prompt starting the same way — the next\n"+
			"turn of a conversation — reuses their KV; tenants (the cache_salt field or\n"+
			"the API key) never share it. --press compresses each prompt's KV once it\n"+
			"is computed (requests choose their own with the kv_press and\n"+
			"kv_press_ratio fields). SIGINT or SIGTERM stops it gracefully:\n"+
			"running requests get --shutdown-timeout to finish.", stderr)
	var o serveOptions
	fs.StringVar(&o.model, "model", "", "Hugging Face model folder or .gguf file (default: the bundled tinychat)")
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
	fs.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text")
	fs.BoolVar(&o.prefixCache, "prefix-cache", true, "keep finished sequences' KV for reuse by later prompts with the same prefix and tenant (cache_salt or API key)")
	fs.StringVar(&o.press, "press", "none", "KV-cache press applied to every prompt once computed, e.g. keydiff, snapkv or keydiff+kivi4 (requests override it with kv_press); pressed prompts are neither taken from nor kept in the prefix cache")
	fs.Float64Var(&o.pressRatio, "press-ratio", 0.5, "fraction of each prompt's KV the press removes (requests override it with kv_press_ratio)")
	rf := addRetrievalFlags(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.setRetrieval(rf); err != nil {
		return err
	}
	var err error
	if o.kvMemory, err = parseBytes(*kvMem); err != nil {
		return usageError{"--kv-memory: " + err.Error()}
	}
	if o.kvFormat, err = kvcache.ParseFormat(*kvFormat); err != nil {
		return usageError{"--kv-format: " + err.Error()}
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
	}
	if o.press != "none" && o.press != "" {
		if _, err := press.Parse(o.press, o.pressRatio); err != nil {
			return usageError{"--press: " + err.Error()}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if o.logJSON {
		h = slog.NewJSONHandler(stderr, nil)
	}
	return serve(ctx, o, slog.New(h), nil)
}

// serve runs the server until ctx ends, then shuts it down gracefully.
// ready, if set, is called with the listening address.
func serve(ctx context.Context, o serveOptions, log *slog.Logger, ready func(addr string)) error {
	pool := compute.NewPool(o.threads)
	defer pool.Close()
	b, err := engine.Open(o.model, pool)
	if err != nil {
		return err
	}
	defer b.Close()
	metrics := server.NewMetrics()
	var cache engine.CacheAllocator = engine.NewPoolCache(b.Net, kvcache.PoolConfig{Budget: o.kvMemory, Format: o.kvFormat})
	if o.prefixCache {
		cache = engine.NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: o.kvMemory, Format: o.kvFormat})
	}
	sched := engine.NewScheduler(b, engine.SchedulerConfig{
		MaxBatch: o.maxBatch, PrefillTokens: o.prefill, QueueSize: o.queue,
		Cache: cache, Observer: metrics, Logger: log,
	})
	defer sched.Close()
	api := server.New(b, sched, server.Config{ModelName: o.name, Metrics: metrics, Logger: log, Press: o.press, PressRatio: o.pressRatio,
		Retrieval: o.retrieval, RetrievalBudget: o.retrievalBudget, RetrievalCold: o.retrievalCold})
	ln, err := net.Listen("tcp", net.JoinHostPort(o.host, strconv.Itoa(o.port)))
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	addr := ln.Addr().String()
	log.Info("serving", "url", "http://"+addr, "model", b.Name, "context", b.ContextLength(),
		"max_batch", o.maxBatch, "queue", o.queue, "press", o.press, "kv_memory", o.kvMemory, "kv_format", o.kvFormat.String(), "prefix_cache", o.prefixCache, "threads", pool.Threads())
	if ready != nil {
		ready(addr)
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing running requests", "timeout", o.shutdown)
	api.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdown)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("requests still running at the shutdown timeout; ending them", "err", err)
		sched.Close() // ends them with an error, so their handlers return
		hs.Close()
	}
	<-served
	sched.Close()
	log.Info("stopped")
	return nil
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
	if err := parseFlags(fs, args); err != nil {
		return err
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
	var lens []int
	for _, f := range splitList(*lengths) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return usageError{fmt.Sprintf("--lengths: %q is not a positive number", f)}
		}
		lens = append(lens, n)
	}
	recs, err := bench.ReadRecords(*data)
	if err != nil {
		return err
	}
	recs = bench.Filter(recs, splitList(*tasks), lens, 0)
	if *convs > 0 && len(recs) > *convs {
		recs = recs[:*convs]
	}
	if len(recs) == 0 {
		return fmt.Errorf("no records of %s match --tasks %q --lengths %q", *data, *tasks, *lengths)
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := bench.RunLoad(ctx, bench.LoadOptions{
		URL: *url, Model: *modelName, Conversations: conversations, Concurrency: *concurrency,
		MaxTokens: *maxTokens, IgnoreEOS: *ignoreEOS, CancelRate: *cancelRate, Seed: *seed,
	})
	if rep == nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "%s: %d conversations, concurrency %d, max_tokens %d, cancel rate %g\n", *url, len(conversations), *concurrency, *maxTokens, *cancelRate)
	rep.Table(stdout)
	if rep.Total.Completed == 0 {
		return errors.New("no request completed")
	}
	return err
}
