package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
)

// This file holds the scheduler's API: what a caller submits (Job), what it
// gets back (Stream, Event, Usage), how it is configured and observed. The
// loop that builds batches is in scheduler_loop.go; the per-sequence work
// (sampling, stop strings) in scheduler_seq.go.

// Job is one request to a Scheduler: a prompt and how to continue it.
type Job struct {
	Prompt []int
	// MaxTokens is the most new tokens per choice; ≤ 0 means up to the
	// model's context length. It is also cut to what the KV budget allows.
	MaxTokens int
	// Sampling chooses tokens. Choice i samples with Seed+i, so choice 0
	// draws what Bundle.Generate draws with the same Sampling: bit for bit
	// while it decodes alone (prefill chunking changes nothing); batched
	// with others, the kernels' summation order may move logits by ~1e-5.
	Sampling Sampling
	// Stop lists strings that end a choice. They are looked for in the
	// decoded text and never appear in it: the text ends before the first
	// match.
	Stop []string
	// IgnoreEOS keeps generating through the model's stop tokens.
	IgnoreEOS bool
	// N is the number of choices (0 means 1). The prompt is computed once
	// and its cache forked for each further choice.
	N int
	// Salt names the tenant whose cached prefixes the job may reuse and
	// add to; jobs of different salts never share a cache ("" is a tenant
	// like any other).
	Salt string
	// NoReuse keeps the job out of the prefix cache: it reuses no cached
	// prefix and leaves none behind (an anonymous client's request, when
	// anonymous requests must not learn from each other's timing).
	NoReuse bool
	// Press, if set, compresses the prompt's KV cache once it is computed
	// and before the first token is sampled (query-aware: the prompt's
	// last tokens are the question). A pressed prompt is computed from
	// scratch — the press sees every token it scores — and its cache is
	// never kept for other requests, which expect every token of a prefix.
	// The prompt is computed layer by layer, each layer compressed before
	// the next exists, as one step that the batch waits for (the pool then
	// never holds more than the compressed cache and one full layer); a
	// press that plans over every layer (CAKE and the like) computes it
	// twice so. One that merges across layers (MiniCache) is computed in
	// chunks and compressed whole.
	Press *press.Press
	// Logprobs asks for each generated token's log-probability
	// (Event.Logprob), with the TopLogprobs (≤ MaxTopLogprobs) most likely
	// tokens at its position.
	Logprobs    bool
	TopLogprobs int
	// PromptLogprobs asks for the log-probability of every prompt token
	// after the first given the tokens before it, with TopLogprobs
	// alternatives (Event.Prompt, on the request's first event). Such a
	// prompt is computed whole: cached prefixes have no logits.
	PromptLogprobs bool
	// Grammar, if set, constrains every choice's tokens (structured
	// output); the model's stop tokens are allowed only where the grammar
	// is complete.
	Grammar Grammar
	// Reuse, if set, prefills the prompt from cached documents (reuse.go).
	Reuse *Reuse
	// Retrieve, if set, makes each choice's retriever for the prompt: the
	// choice's decode steps then attend only to the cached tokens it
	// selects (package retrieve); prefill stays full.
	Retrieve func(prompt []int) model.Retriever
}

// Finish reasons that only the scheduler gives, beside FinishStop and
// FinishLength (they reach Observer.Finished, never a client).
const (
	FinishCancelled Finish = "cancelled" // the request's context ended
	FinishError     Finish = "error"     // the request failed
)

// Errors of Submit. A full queue is the caller's cue to retry later (HTTP
// 429); a closed scheduler takes no more work.
var (
	ErrQueueFull = errors.New("engine: request queue is full")
	ErrClosed    = errors.New("engine: scheduler is closed")
)

// ParamError reports a Job parameter outside its range.
type ParamError struct {
	Param string // the parameter, e.g. "n"
	Msg   string
}

// Error says which parameter is wrong and why.
func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

// CacheAllocator hands out KV caches and accounts for their memory. The
// scheduler calls it from its own goroutine only, except SeqBytes, a pure
// function, which it may call from any goroutine.
//
// An allocator may keep the caches it is given back (a prefix cache) and
// hand their tokens to later sequences of the same salt; Cached, Share and
// Reclaim exist for it, and an allocator without one answers 0 and does
// nothing.
type CacheAllocator interface {
	// Cached returns how many leading tokens of prompt Acquire would find
	// cached for salt now. It changes nothing; the scheduler asks it of
	// waiting requests to choose among them.
	Cached(salt string, prompt []int) int
	// Acquire returns a cache for a sequence of salt that starts with
	// prompt. It may already hold a prefix of prompt (Next() > 0, at most
	// len(prompt)−1 tokens); the scheduler then computes only the rest.
	Acquire(salt string, prompt []int) (*kvcache.Seq, error)
	// Fork returns a new cache that holds the first n tokens of src.
	Fork(src *kvcache.Seq, n int) (*kvcache.Seq, error)
	// Share offers the tokens that s holds, in order, to later sequences of
	// salt while s stays in use (the scheduler calls it once a prompt is
	// computed, so that requests waiting on the same prefix reuse it).
	Share(s *kvcache.Seq, salt string, tokens []int)
	// Release gives a cache back. tokens are the ids it holds, in order,
	// so that a prefix cache can keep them for later requests of salt; nil
	// tokens mean the cache is not to be kept.
	Release(s *kvcache.Seq, salt string, tokens []int)
	// Reclaim drops kept caches that no sequence uses, least recently used
	// first, until at least bytes are freed or none is left, and returns
	// the bytes freed.
	Reclaim(bytes int64) int64
	// SeqBytes returns the most bytes a sequence of n tokens takes.
	SeqBytes(n int) int64
	// Trim hands memory that no cache holds (blocks kept for reuse) back
	// to the Go heap and returns its bytes; the scheduler calls it when
	// it runs out of work.
	Trim() int64
	// Stats reports the memory in use and the budget.
	Stats() CacheStats
}

// CacheStats is a CacheAllocator's memory.
type CacheStats struct {
	UsedBytes  int64
	Capacity   int64 // the budget in bytes; 0 means none
	UsedBlocks int
	FreeBlocks int // blocks the budget still allows; -1 without a budget
	// A prefix cache's contents and traffic (zero without one).
	PrefixTokens    int   // distinct tokens kept for reuse
	PrefixEvictions int64 // kept caches dropped to make room, since start
}

// Observer receives the scheduler's measurements, for metrics. Its methods
// run on the scheduler's goroutine and must return quickly.
type Observer interface {
	// Admitted is called when a request leaves the queue: how long it
	// waited, its prompt length and how many prompt tokens were cached.
	Admitted(wait time.Duration, promptTokens, cachedTokens int)
	// FirstToken gives the time from Submit to a request's first token.
	FirstToken(ttft time.Duration)
	// NextToken gives the time between two tokens of one choice.
	NextToken(itl time.Duration)
	// Step is called after each batched forward pass.
	Step(StepInfo)
	// Finished is called once per choice when it ends.
	Finished(reason Finish, completionTokens int)
}

// StepInfo describes one batched forward pass.
type StepInfo struct {
	Sequences     int // sequences in the batch
	PrefillTokens int // prompt tokens computed
	DecodeTokens  int // generated tokens fed back
	Sampled       int // tokens sampled after the pass (stop tokens included)
	Elapsed       time.Duration
}

// SchedulerConfig configures a Scheduler. The zero value of each field
// picks a default.
type SchedulerConfig struct {
	// MaxBatch is the most sequences (choices) in flight at once; 8 if 0.
	MaxBatch int
	// PrefillTokens is the most prompt tokens one step computes, over all
	// sequences still reading their prompt (chunked prefill); 256 if 0.
	// Smaller chunks stall decoding sequences less, larger ones prefill a
	// little faster; the chunking does not change any result.
	PrefillTokens int
	// QueueSize is the most requests waiting for a place in the batch; 64
	// if 0. Submit fails with ErrQueueFull beyond it.
	QueueSize int
	// Cache allocates KV caches; a PoolCache without a budget if nil.
	Cache CacheAllocator
	// Observer receives measurements; none if nil.
	Observer Observer
	// Logger logs failures; slog.Default() if nil.
	Logger *slog.Logger
}

// SchedulerStats is a snapshot of a scheduler's state.
type SchedulerStats struct {
	Queued  int        // requests waiting for a place in the batch
	Running int        // sequences in the batch
	KV      CacheStats // the KV cache's memory
	// Totals since start.
	PromptTokens    int64 // prompt tokens of admitted requests
	CachedTokens    int64 // of which were found cached
	PrefillTokens   int64 // prompt tokens computed
	GeneratedTokens int64 // tokens generated (stop tokens not counted)
	Sampled         int64 // tokens sampled (stop tokens counted)
	Steps           int64 // forward passes
}

// Usage counts a finished request's tokens.
type Usage struct {
	PromptTokens     int
	CachedTokens     int // prompt tokens that were already cached
	CompletionTokens int // over all choices
	// KVBytesBeforePress and KVBytesAfterPress are the prompt cache's
	// stored bytes just before and after the job's press compressed it
	// (both 0 without a press).
	KVBytesBeforePress, KVBytesAfterPress int64
}

// Event is one piece of a request's output.
type Event struct {
	Choice int    // which choice, 0 … N-1
	Text   string // new text, possibly "" on a choice's last event
	Token  int    // the id sampled with this event, -1 if none
	// Finish is set on a choice's last event.
	Finish Finish
	// Err is set on the last event of a failed or cancelled request; it
	// ends every choice that had not finished.
	Err error
	// Embedding is an input's pooled embedding (SubmitEmbed).
	Embedding []float32
	// Logprob is the sampled token's log-probability, with Job.Logprobs.
	Logprob *Logprob
	// Prompt holds the prompt's log-probabilities (Job.PromptLogprobs),
	// on the request's first event: entry i is token i+1's.
	Prompt []Logprob
}

// Stream delivers a request's events. The scheduler never waits for its
// reader: events queue up until read.
type Stream struct {
	// N is the number of choices.
	N int
	// PromptTokens is the prompt's length.
	PromptTokens int

	mu     sync.Mutex
	events []Event
	done   bool
	usage  Usage
	wake   chan struct{} // capacity 1: something was pushed
}

func newStream(n, prompt int) *Stream {
	return &Stream{N: n, PromptTokens: prompt, wake: make(chan struct{}, 1)}
}

// Recv returns the next event. After the last event of every choice it
// returns io.EOF; it returns ctx's error if ctx ends first.
func (s *Stream) Recv(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if len(s.events) > 0 {
			ev := s.events[0]
			s.events[0] = Event{}
			s.events = s.events[1:]
			s.mu.Unlock()
			return ev, nil
		}
		done := s.done
		s.mu.Unlock()
		if done {
			return Event{}, io.EOF
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Usage returns the request's token counts; they are final once Recv has
// returned io.EOF.
func (s *Stream) Usage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage
}

// push queues events; with last it also ends the stream.
func (s *Stream) push(last bool, u Usage, evs ...Event) {
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.usage = u
	if last {
		s.done = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Scheduler runs many requests through one model with continuous batching:
// each step, every decoding sequence contributes one token and sequences
// still reading their prompt contribute chunks under a token budget, all in
// one forward pass. One goroutine owns the batch; Submit and Stats are safe
// for concurrent use.
type Scheduler struct {
	b      *Bundle
	cfg    SchedulerConfig
	log    *slog.Logger
	budget int64 // the KV budget in bytes, 0 for none

	mu     sync.Mutex
	queue  []*request
	closed bool
	stats  SchedulerStats

	wake chan struct{} // capacity 1: the queue grew
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the loop has ended
}

// NewScheduler starts a scheduler over b. Close stops it.
func NewScheduler(b *Bundle, cfg SchedulerConfig) *Scheduler {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 8
	}
	if cfg.PrefillTokens <= 0 {
		cfg.PrefillTokens = 256
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 64
	}
	if cfg.Cache == nil {
		cfg.Cache = NewPoolCache(b.Net, kvcache.PoolConfig{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Scheduler{
		b: b, cfg: cfg, log: cfg.Logger,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	s.stats.KV = cfg.Cache.Stats()
	s.budget = s.stats.KV.Capacity
	go s.loop()
	return s
}

// Config returns the scheduler's configuration, defaults filled in.
func (s *Scheduler) Config() SchedulerConfig { return s.cfg }

// Submit queues a job and returns the stream of its output. It does not
// wait: a full queue gives ErrQueueFull, a prompt the model cannot take a
// *PromptError, a parameter out of range a *ParamError, a model without a
// tokenizer (events carry text) an error wrapping ErrNoTokenizer. When ctx
// ends the request leaves the batch at the next step and its cache is
// released.
func (s *Scheduler) Submit(ctx context.Context, job Job) (*Stream, error) {
	if err := s.b.NeedTokenizer("the scheduler's text events"); err != nil {
		return nil, err
	}
	r, err := s.prepare(ctx, job)
	if err != nil {
		return nil, err
	}
	if err := s.enqueue(r); err != nil {
		return nil, err
	}
	return r.stream, nil
}

// prepare checks a job and turns it into a request.
func (s *Scheduler) prepare(ctx context.Context, job Job) (*request, error) {
	limit := s.b.ContextLength()
	vocab := s.b.Net.Config.VocabSize
	n := max(job.N, 1)
	switch {
	case len(job.Prompt) == 0:
		return nil, &PromptError{"prompt is empty"}
	case len(job.Prompt) >= limit:
		return nil, &PromptError{fmt.Sprintf("prompt has %d tokens; the model's context is %d, leaving no room to generate", len(job.Prompt), limit)}
	case job.N < 0:
		return nil, &ParamError{"n", fmt.Sprintf("%d must be ≥ 1", job.N)}
	case n > s.cfg.MaxBatch:
		return nil, &ParamError{"n", fmt.Sprintf("%d is more than the server's batch of %d sequences", n, s.cfg.MaxBatch)}
	}
	if err := job.Sampling.Validate(); err != nil {
		return nil, &ParamError{"sampling", err.Error()}
	}
	for i, id := range job.Prompt {
		if id < 0 || id >= vocab {
			return nil, &PromptError{fmt.Sprintf("prompt token %d at index %d is outside the vocabulary of %d", id, i, vocab)}
		}
	}
	for _, st := range job.Stop {
		if st == "" {
			return nil, &ParamError{"stop", "stop strings must not be empty"}
		}
	}
	if job.TopLogprobs < 0 || job.TopLogprobs > MaxTopLogprobs {
		return nil, &ParamError{"top_logprobs", fmt.Sprintf("%d must be in [0, %d]", job.TopLogprobs, MaxTopLogprobs)}
	}
	for id := range job.Sampling.LogitBias {
		if id >= vocab {
			return nil, &ParamError{"logit_bias", fmt.Sprintf("token %d is outside the vocabulary of %d", id, vocab)}
		}
	}
	maxNew := limit - len(job.Prompt)
	if job.MaxTokens > 0 {
		maxNew = min(maxNew, job.MaxTokens)
	}
	// The KV budget: every choice holds the prompt and its own tokens (a
	// bound that forks sharing the prompt's blocks only undercut).
	reserve := int64(n) * s.cfg.Cache.SeqBytes(len(job.Prompt)+maxNew)
	if budget := s.budget; budget > 0 && reserve > budget {
		fit := maxTokensWithin(s.cfg.Cache, budget/int64(n), len(job.Prompt)+maxNew)
		if fit <= len(job.Prompt) {
			return nil, &PromptError{fmt.Sprintf("prompt has %d tokens and %d choices; the KV memory budget of %d bytes holds %d tokens a choice", len(job.Prompt), n, budget, fit)}
		}
		maxNew = fit - len(job.Prompt)
		reserve = int64(n) * s.cfg.Cache.SeqBytes(fit)
	}
	r := &request{
		ctx:     ctx,
		job:     job,
		n:       n,
		maxNew:  maxNew,
		reserve: reserve,
		stream:  newStream(n, len(job.Prompt)),
	}
	return r, nil
}

// maxTokensWithin returns the longest sequence, at most hi tokens, whose
// cache fits in budget bytes.
func maxTokensWithin(c CacheAllocator, budget int64, hi int) int {
	lo := 0 // fits
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if c.SeqBytes(mid) <= budget {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// RandomSeed returns a seed for a request that gave none.
func RandomSeed() uint64 { return rand.Uint64() }

// Stats returns a snapshot of the scheduler's state.
func (s *Scheduler) Stats() SchedulerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close stops the scheduler: requests still queued or running end with
// ErrClosed, their caches are released, and the scheduler's goroutine has
// exited when Close returns.
func (s *Scheduler) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.quit)
	}
	s.mu.Unlock()
	<-s.done
	return nil
}
