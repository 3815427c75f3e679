package engine

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/tokenizer"
)

// loop is the scheduler's goroutine: it admits queued requests, runs one
// batched step after another while there is work, and sleeps otherwise.
func (s *Scheduler) loop() {
	defer close(s.done)
	obs := s.cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	l := &loopState{s: s, obs: obs}
	for {
		if len(l.running) == 0 {
			l.publish()
			if !s.queued() {
				l.trim()
				select {
				case <-s.wake:
				case <-s.quit:
				}
			}
		}
		select {
		case <-s.quit:
			l.shutdown()
			return
		default:
		}
		l.reap()
		l.admit()
		if len(l.running) > 0 {
			l.step()
			l.reap()
		}
		l.publish()
	}
}

// trim hands the blocks freed since the last pause back to the Go heap
// and the operating system, once the loop has nothing to do: a server's
// memory falls back after a peak instead of staying at its high-water
// mark.
func (l *loopState) trim() {
	if l.s.cfg.Cache.Trim() > 0 && scavenging.CompareAndSwap(false, true) {
		go func() { // a forced collection takes milliseconds: not on the loop
			defer scavenging.Store(false)
			debug.FreeOSMemory()
		}()
	}
}

// scavenging is set while a trim's collection runs.
var scavenging atomic.Bool

// queued reports whether requests wait in the queue.
func (s *Scheduler) queued() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0
}

// loopState is what the loop owns.
type loopState struct {
	s       *Scheduler
	obs     Observer
	running []*request

	steps  []model.Step
	owners []*seq

	totals SchedulerStats // the cumulative counters

	// stalled stops admission after the KV budget had no room for the
	// request picked, until a cache comes back.
	stalled bool
}

// publish copies the loop's state into the scheduler's snapshot.
func (l *loopState) publish() {
	running := 0
	for _, r := range l.running {
		running += r.slots()
	}
	c := l.s.cfg.Cache
	s := l.s
	s.mu.Lock()
	t := l.totals
	t.Queued = len(s.queue)
	t.Running = running
	t.KV = c.Stats()
	s.stats = t
	s.mu.Unlock()
}

// reap ends requests whose context is done, queued or running, and drops
// finished requests from the batch.
func (l *loopState) reap() {
	s := l.s
	var gone []*request
	s.mu.Lock()
	s.queue = slices.DeleteFunc(s.queue, func(r *request) bool {
		if r.ctx.Err() != nil {
			gone = append(gone, r)
			return true
		}
		return false
	})
	s.mu.Unlock()
	for _, r := range gone {
		l.fail(r, r.ctx.Err())
	}
	for _, r := range l.running {
		if !r.ended && r.ctx.Err() != nil {
			l.fail(r, r.ctx.Err())
		}
	}
	l.running = slices.DeleteFunc(l.running, func(r *request) bool { return r.ended })
}

// Admission policy. Among the first pickWindow queued requests, the one
// with the longest cached prefix goes first (SGLang's longest-prefix-first:
// it computes least and keeps its prefix warm), ties to the earliest; a
// request passed over maxSkips times goes first, so none starves. A request
// whose prompt shares at least sharedWait uncached tokens with a prompt the
// batch is still computing waits for it: once computed that prompt is
// cached (CacheAllocator.Share), and the shared part is computed once.
const (
	pickWindow = 16
	maxSkips   = 8
	sharedWait = 32
)

// errNoRoom is start's answer when the KV budget cannot take a request
// until running ones finish.
var errNoRoom = errors.New("engine: no KV room until running requests finish")

// admit moves queued requests into the batch while there are batch places
// and KV budget for them.
func (l *loopState) admit() {
	s := l.s
	if l.stalled {
		return
	}
	slots, held := 0, int64(0)
	for _, r := range l.running {
		slots += r.slots()
		held += r.held()
	}
	budget := s.budget
	for {
		r := l.pick(s.cfg.MaxBatch - slots)
		if r == nil || (budget > 0 && held+r.reserve > budget) {
			return
		}
		err := l.start(r)
		if errors.Is(err, errNoRoom) {
			l.stalled = true // until a cache comes back
			return
		}
		s.mu.Lock()
		if i := slices.Index(s.queue, r); i >= 0 {
			s.queue = slices.Delete(s.queue, i, i+1)
		}
		s.mu.Unlock()
		if err != nil {
			l.fail(r, err)
			continue
		}
		slots += r.slots()
		held += r.held()
		l.running = append(l.running, r)
	}
}

// pick chooses the queued request to admit next under the admission policy
// above, or nil if none may go now. Only the loop removes requests from the
// queue, so the ones it sees stay queued while it looks at them.
func (l *loopState) pick(free int) *request {
	s := l.s
	s.mu.Lock()
	window := slices.Clone(s.queue[:min(len(s.queue), pickWindow)])
	s.mu.Unlock()
	var best *request
	bestCached := -1
	for _, r := range window {
		if r.skipped >= maxSkips { // its turn, even if it must wait for places
			if r.n > free {
				return nil
			}
			best = r
			break
		}
		if r.n > free {
			continue
		}
		cached := 0
		if r.job.Press == nil && !r.job.NoReuse { // a pressed prompt is computed whole
			cached = l.s.cfg.Cache.Cached(r.job.Salt, r.job.Prompt)
		}
		if l.computing(r, cached) {
			continue
		}
		if cached > bestCached {
			best, bestCached = r, cached
		}
	}
	if best == nil {
		return nil
	}
	for _, r := range window {
		if r == best {
			break
		}
		r.skipped++
	}
	return best
}

// computing reports whether a request in the batch is still computing a
// prompt of r's salt that shares at least sharedWait tokens with r's
// prompt beyond the cached ones.
func (l *loopState) computing(r *request, cached int) bool {
	if r.job.Press != nil || r.job.NoReuse { // it computes its whole prompt anyway
		return false
	}
	for _, q := range l.running {
		if q.prefilled || q.ended || q.job.Salt != r.job.Salt || q.job.Press != nil || q.job.NoReuse {
			continue
		}
		a, b := r.job.Prompt, q.job.Prompt
		n := min(len(a), len(b))
		if n < cached+sharedWait {
			continue
		}
		i := 0
		for i < n && a[i] == b[i] {
			i++
		}
		if i >= cached+sharedWait {
			return true
		}
	}
	return false
}

// start gives a request its first cache and its choices. Under a KV budget
// it makes sure the pool can hold what the batch may grow to with r in it,
// or answers errNoRoom.
func (l *loopState) start(r *request) error {
	s := l.s
	c := s.cfg.Cache
	prompt := r.job.Prompt
	shared := prompt
	if r.job.Press != nil { // the press must see the whole prompt computed
		shared = prompt[:0]
		r.observer = press.Observer([]*press.Press{r.job.Press}, 0, len(prompt))
	}
	if ru := r.job.Reuse; ru != nil {
		return l.startReuse(r, ru)
	}
	if r.job.NoReuse || r.job.PromptLogprobs { // no reuse asked, or every prompt position's logits are needed
		shared = prompt[:0]
	}
	cache, err := c.Acquire(r.job.Salt, shared)
	if err != nil {
		return fmt.Errorf("engine: KV cache for a %d-token prompt: %w", len(prompt), err)
	}
	if cache.Next() >= len(prompt) { // all cached: recompute the last token for its logits
		if err := cache.Truncate(len(prompt) - 1); err != nil {
			c.Release(cache, r.job.Salt, nil)
			return err
		}
	}
	if s.budget > 0 && !l.room(r, cache) {
		c.Release(cache, r.job.Salt, nil)
		if len(l.running) > 0 {
			return errNoRoom
		}
		// Alone and still short: what is left is the prefix r itself
		// holds. Drop every kept cache and start from nothing.
		c.Reclaim(math.MaxInt64)
		if cache, err = c.Acquire(r.job.Salt, prompt[:0]); err != nil {
			return fmt.Errorf("engine: KV cache for a %d-token prompt: %w", len(prompt), err)
		}
		if !l.room(r, cache) {
			c.Release(cache, r.job.Salt, nil)
			return fmt.Errorf("engine: %d-token prompt: %w", len(prompt), kvcache.ErrBudget)
		}
	}
	r.cached = cache.Next()
	l.setup(r, cache)
	return nil
}

// startReuse admits a request whose prompt is prefilled from cached
// documents: its cache comes whole, with the last token's logits, and
// step hands it to prefilled.
func (l *loopState) startReuse(r *request, ru *Reuse) error {
	res, err := ru.Method.Prefill(ru.Blender, r.job.Salt, ru.Prompt)
	if err != nil {
		return fmt.Errorf("engine: %s prefill of a %d-token prompt: %w", ru.Method.Name(), len(r.job.Prompt), err)
	}
	if l.s.budget > 0 && !l.room(r, res.Cache) {
		res.Cache.Release()
		if len(l.running) > 0 {
			return errNoRoom
		}
		return fmt.Errorf("engine: %d-token prompt: %w", len(r.job.Prompt), kvcache.ErrBudget)
	}
	r.cached = res.Reused
	l.setup(r, res.Cache)
	copy(r.seqs[0].logits, res.Logits)
	return nil
}

// setup gives an admitted request its choices, the first holding cache.
func (l *loopState) setup(r *request, cache *kvcache.Seq) {
	s := l.s
	prompt := r.job.Prompt
	r.live = r.n
	r.seqs = make([]*seq, r.n)
	for i := range r.seqs {
		sp := r.job.Sampling
		sp.Seed += uint64(i)
		q := &seq{
			r: r, choice: i,
			sampler: NewSampler(sp),
			dec:     tokenizer.NewStream(s.b.Tokenizer),
			stop:    stopMatcher{stops: r.job.Stop},
		}
		q.sampler.SetPrompt(prompt)
		if g := r.job.Grammar; g != nil {
			q.matcher = g.NewMatcher()
			q.mask = make([]uint64, (s.b.Net.Config.VocabSize+63)/64)
		}
		if r.job.Retrieve != nil {
			q.retr = r.job.Retrieve(r.job.Prompt)
		}
		r.seqs[i] = q
	}
	r.seqs[0].cache = cache
	r.seqs[0].logits = make([]float32, s.b.Net.Config.VocabSize)
	l.totals.PromptTokens += int64(len(prompt))
	l.totals.CachedTokens += int64(r.cached)
	l.obs.Admitted(time.Since(r.submitted), len(prompt), r.cached)
}

// room reports whether the pool can hold the batch at its largest with r
// in it — every running choice grown to its reservation, r from its cache
// on, and the partly filled blocks that sharing prompts copies — evicting
// kept caches that nobody uses if it must.
func (l *loopState) room(r *request, cache *kvcache.Seq) bool {
	c := l.s.cfg.Cache
	need := r.reserve - cache.Bytes() + c.SeqBytes(1)
	for _, q := range l.running {
		if !q.prefilled { // the fork its prompt will be shared by
			need += c.SeqBytes(1)
		}
		grown := q.held()
		for _, sq := range q.seqs {
			if !sq.done && sq.cache != nil {
				grown -= sq.cache.Bytes()
			}
		}
		need += max(0, grown)
	}
	over := c.Stats().UsedBytes + need - l.s.budget
	if over <= 0 {
		return true
	}
	c.Reclaim(over)
	return c.Stats().UsedBytes+need <= l.s.budget
}

// step runs one batched forward pass: a prompt chunk for each request
// still reading its prompt, under the prefill budget, and one token for
// every decoding choice; then it samples where logits came back.
func (l *loopState) step() {
	s := l.s
	l.steps, l.owners = l.steps[:0], l.owners[:0]
	budget := s.cfg.PrefillTokens
	prefill, decode := 0, 0
	embedBudget := l.embedBudget(budget)
	for _, r := range l.running {
		if !r.prefilled {
			if q := r.seqs[0]; r.job.Reuse != nil && q.cache.Next() == len(r.job.Prompt) {
				l.prefilled(r) // prefilled from cached documents at admission
				continue
			}
			if budget == 0 {
				continue
			}
			q := r.seqs[0]
			if l.layered(r) { // the whole prompt, as a step of its own
				budget = 0
				l.prefillLayered(r)
				continue
			}
			start := q.cache.Next()
			chunk := budget
			if r.embed != nil {
				chunk = min(chunk, embedBudget)
			}
			end := min(len(r.job.Prompt), start+chunk)
			if r.job.PromptLogprobs { // every row comes back: small chunks
				end = min(end, start+promptLogprobChunk)
			}
			budget -= end - start
			prefill += end - start
			st := model.Step{Cache: q.cache, Tokens: r.job.Prompt[start:end], Output: model.NoLogits, Observe: r.observer, Pooled: r.pooled, Retrieve: q.retr}
			if end == len(r.job.Prompt) && r.embed == nil {
				st.Output, st.Logits = model.LastLogits, q.logits
			}
			if r.job.PromptLogprobs {
				v := s.b.Net.Config.VocabSize
				if r.allLogits == nil {
					r.allLogits = make([]float32, promptLogprobChunk*v)
				}
				st.Output, st.Logits = model.AllLogits, r.allLogits[:(end-start)*v]
			}
			l.steps = append(l.steps, st)
			l.owners = append(l.owners, q)
			continue
		}
		for _, q := range r.seqs {
			if !q.done {
				l.steps = append(l.steps, model.Step{Cache: q.cache, Tokens: q.in[:], Output: model.LastLogits, Logits: q.logits, Retrieve: q.retr})
				l.owners = append(l.owners, q)
				decode++
			}
		}
	}
	if len(l.steps) == 0 {
		return
	}
	l.makeRoom()
	t0 := time.Now()
	ok := l.forward()
	l.totals.Steps++
	l.totals.PrefillTokens += int64(prefill)
	elapsed := time.Since(t0)
	sampled := l.totals.Sampled
	for i, q := range l.owners {
		r := q.r
		if !ok[i] || r.ended || q.done {
			continue
		}
		if !r.prefilled {
			if r.job.PromptLogprobs {
				l.promptLogprobs(r, l.steps[i])
			}
			if q.cache.Next() == len(r.job.Prompt) {
				if r.embed != nil {
					l.embedded(r)
				} else {
					l.prefilled(r)
				}
			}
			continue
		}
		l.sample(q, q.logits)
	}
	l.obs.Step(StepInfo{Sequences: len(l.steps), PrefillTokens: prefill, DecodeTokens: decode, Sampled: int(l.totals.Sampled - sampled), Elapsed: elapsed})
	clear(l.owners)
	clear(l.steps)
}

// makeRoom evicts kept caches if the pool lacks the blocks l.steps may
// take. Admission leaves room for every running choice's reservation, so
// this only takes back what the allocator kept since (a prompt shared once
// computed).
func (l *loopState) makeRoom() {
	budget := l.s.budget
	if budget <= 0 {
		return
	}
	c := l.s.cfg.Cache
	need := int64(0)
	for _, st := range l.steps {
		n := st.Cache.Next()
		need += c.SeqBytes(n+len(st.Tokens)) - c.SeqBytes(n) + c.SeqBytes(1) // + a copy-on-write
	}
	if short := c.Stats().UsedBytes + need - budget; short > 0 {
		c.Reclaim(short)
	}
}

// forward runs l.steps and reports which succeeded. A batch that fails its
// checks has changed nothing, so each step is retried alone and only the
// requests whose step fails are ended; a panic ends the whole batch.
func (l *loopState) forward() []bool {
	ok := make([]bool, len(l.steps))
	err := l.forwardSafe(l.steps)
	if err == nil {
		for i := range ok {
			ok[i] = true
		}
		return ok
	}
	var pe *panicError
	if errors.As(err, &pe) {
		l.s.log.Error("forward pass panicked; ending its batch", "err", err)
		for _, q := range l.owners {
			l.fail(q.r, err)
		}
		return ok
	}
	for i := range l.steps {
		if l.owners[i].r.ended { // failed with an earlier step: its caches are gone
			continue
		}
		if e := l.forwardSafe(l.steps[i : i+1]); e != nil {
			l.s.log.Warn("request failed in the forward pass", "err", e)
			l.fail(l.owners[i].r, e)
			continue
		}
		ok[i] = true
	}
	return ok
}

// panicError is a panic of the forward pass, recovered.
type panicError struct{ v any }

// Error describes the panic.
func (e *panicError) Error() string { return fmt.Sprintf("engine: forward pass panicked: %v", e.v) }

// forwardSafe runs one batched pass, turning a panic into an error.
func (l *loopState) forwardSafe(steps []model.Step) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{v}
		}
	}()
	return l.s.b.Net.ForwardBatch(steps)
}

// prefilled is called once a request's prompt is in its first cache: the
// other choices fork that cache, and every choice samples its first token
// from the prompt's last logits.
func (l *loopState) prefilled(r *request) {
	r.prefilled = true
	first := r.seqs[0]
	if p := r.job.Press; p != nil && !r.pressed {
		r.pressed = true
		r.pressedFrom = first.cache.Bytes()
		err := p.Compress(l.s.b.Net, first.cache, r.observer)
		r.pressedTo = first.cache.Bytes()
		r.observer = nil
		if err != nil {
			l.fail(r, fmt.Errorf("engine: compress the prompt's KV cache: %w", err))
			return
		}
	} else if !r.job.NoReuse && r.job.Reuse == nil { // a blended cache is not exact: nobody may reuse it as a prefix
		l.s.cfg.Cache.Share(first.cache, r.job.Salt, r.job.Prompt)
	}
	for _, q := range r.seqs[1:] {
		c, err := l.s.cfg.Cache.Fork(first.cache, len(r.job.Prompt))
		if err != nil {
			l.fail(r, fmt.Errorf("engine: fork the prompt's KV cache: %w", err))
			return
		}
		q.cache = c
		q.logits = slices.Clone(first.logits)
	}
	for _, q := range r.seqs {
		if r.ended {
			return
		}
		l.sample(q, q.logits)
	}
}

// layered reports whether r's prompt is computed layer by layer and each
// layer compressed before the next exists (prefillLayered): a pressed
// prompt not yet begun whose press compresses each layer on its own or
// plans over all of them (CAKE, CompressKV, WindowKV: two layer-by-layer
// passes, press.Press.Prefill). A press that merges across layers
// (MiniCache) is computed in chunks beside the batch and compressed whole
// in prefilled, its peak the full prompt; so is a prompt with a
// retriever, which watches prefill steps.
func (l *loopState) layered(r *request) bool {
	q, p := r.seqs[0], r.job.Press
	return p != nil && (p.Layerwise() || p.Planned()) && r.job.Reuse == nil && r.embed == nil &&
		!r.job.PromptLogprobs && q.retr == nil && q.cache.Next() == 0
}

// prefillLayered computes r's whole prompt layer by layer and compresses
// each layer as soon as every token has passed it (press.Press.Prefill),
// so the prompt's cache never holds more than its compressed layers and
// one full one. It runs as one step on its own: every layer needs the
// whole prompt through the layer before, so it cannot be cut into chunks
// between other steps, and the batch's decoding waits for the whole
// prompt's computation (a chunked prefill lets decoding steps in between).
// The tokens are those of a whole-prompt pass then Press.Compress.
func (l *loopState) prefillLayered(r *request) {
	q := r.seqs[0]
	prompt := r.job.Prompt
	if budget := l.s.budget; budget > 0 { // as makeRoom: take back kept caches the prompt may need
		c := l.s.cfg.Cache
		if short := c.Stats().UsedBytes + c.SeqBytes(len(prompt)) + c.SeqBytes(1) - budget; short > 0 {
			c.Reclaim(short)
		}
	}
	t0 := time.Now()
	before := q.cache.Bytes()
	logits, full, err := l.pressSafe(r)
	elapsed := time.Since(t0)
	l.totals.Steps++
	l.totals.PrefillTokens += int64(len(prompt))
	l.obs.Step(StepInfo{Sequences: 1, PrefillTokens: len(prompt), Elapsed: elapsed})
	r.observer = nil
	if err != nil {
		l.fail(r, fmt.Errorf("engine: compute and compress the prompt's KV cache: %w", err))
		return
	}
	copy(q.logits, logits)
	r.pressed = true
	r.pressedFrom, r.pressedTo = before+full, q.cache.Bytes()
	l.prefilled(r)
}

// pressSafe runs r's layered prefill, turning a panic into an error.
func (l *loopState) pressSafe(r *request) (logits []float32, full int64, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{v}
		}
	}()
	return r.job.Press.Prefill(l.s.b.Net, r.seqs[0].cache, r.job.Prompt, model.LastLogits, r.observer)
}

// promptLogprobChunk is the most prompt tokens a step computes for a
// request that wants the prompt's logprobs (each comes back as a row).
const promptLogprobChunk = 16

// promptLogprobs turns the rows of a prompt chunk into the logprobs of the
// prompt tokens they predict; after the last chunk it hands them out, and
// the last row becomes the logits the first token is sampled from.
func (l *loopState) promptLogprobs(r *request, st model.Step) {
	v := l.s.b.Net.Config.VocabSize
	prompt := r.job.Prompt
	start := r.seqs[0].cache.Next() - len(st.Tokens)
	for j := range st.Tokens {
		row := st.Logits[j*v : (j+1)*v]
		if next := start + j + 1; next < len(prompt) {
			r.promptLP = append(r.promptLP, logprobOf(row, prompt[next], r.job.TopLogprobs))
		} else {
			copy(r.seqs[0].logits, row)
		}
	}
	if start+len(st.Tokens) == len(prompt) {
		r.allLogits = nil
		r.stream.push(false, r.usage(), Event{Token: -1, Prompt: r.promptLP})
		r.promptLP = nil
	}
}

// sample draws a choice's next token and hands out its text; it ends the
// choice at a stop token, a stop string or its token limit. Before the
// draw, the logprobs are taken from the raw logits, then the sampler
// adjusts them and the grammar masks them.
func (l *loopState) sample(q *seq, logits []float32) {
	r := q.r
	if r.job.Logprobs {
		q.raw = append(q.raw[:0], logits...)
	}
	q.sampler.Adjust(logits)
	if q.matcher != nil {
		q.matcher.FillMask(q.mask)
		if q.matcher.CanEnd() && !r.job.IgnoreEOS {
			for _, id := range l.s.b.Stop {
				if id >= 0 && id/64 < len(q.mask) {
					q.mask[id/64] |= 1 << (id % 64)
				}
			}
		}
		if !anyBit(q.mask) { // complete, and nothing may follow
			l.finish(q, FinishStop)
			return
		}
		applyMask(logits, q.mask)
	}
	id := q.sampler.Sample(logits)
	q.sampler.Accepted(id)
	var lp *Logprob
	if r.job.Logprobs {
		x := logprobOf(q.raw, id, r.job.TopLogprobs)
		lp = &x
	}
	now := time.Now()
	if !r.sawToken {
		r.sawToken = true
		l.obs.FirstToken(now.Sub(r.submitted))
	} else if !q.last.IsZero() {
		l.obs.NextToken(now.Sub(q.last))
	}
	q.last = now
	l.totals.Sampled++
	if !r.job.IgnoreEOS && slices.Contains(l.s.b.Stop, id) {
		l.finish(q, FinishStop)
		return
	}
	if q.matcher != nil && !q.matcher.Accept(id) {
		l.fail(r, fmt.Errorf("engine: the grammar refused token %d that its mask allowed", id))
		return
	}
	q.out = append(q.out, id)
	r.completion++
	l.totals.GeneratedTokens++
	text, hit := q.stop.push(q.dec.Push(id))
	if hit {
		q.dec.Flush() // what follows the stop string is dropped
		l.emit(q, Event{Choice: q.choice, Text: text, Token: id, Logprob: lp})
		l.finish(q, FinishStop)
		return
	}
	l.emit(q, Event{Choice: q.choice, Text: text, Token: id, Logprob: lp})
	if len(q.out) >= r.maxNew {
		l.finish(q, FinishLength)
		return
	}
	q.in[0] = id
}

// anyBit reports whether a bit set has a bit set.
func anyBit(mask []uint64) bool {
	for _, w := range mask {
		if w != 0 {
			return true
		}
	}
	return false
}

// emit hands an event to the request's reader.
func (l *loopState) emit(q *seq, ev Event) {
	q.r.stream.push(false, q.r.usage(), ev)
}

// finish ends one choice: the text held back goes out with the finish
// reason, and the choice's cache goes back at once.
func (l *loopState) finish(q *seq, why Finish) {
	r := q.r
	text, hit := q.stop.push(q.dec.Flush())
	if hit {
		why = FinishStop
	} else {
		text += q.stop.flush()
	}
	l.release(q, true)
	r.live--
	l.obs.Finished(why, len(q.out))
	last := r.live == 0
	r.ended = last
	r.stream.push(last, r.usage(), Event{Choice: q.choice, Text: text, Token: -1, Finish: why})
}

// release gives a choice's cache back; with keep, the allocator may keep
// its tokens for later requests.
func (l *loopState) release(q *seq, keep bool) {
	q.done = true
	if q.cache != nil {
		var tokens []int
		if keep && q.r.job.Press == nil && !q.r.job.NoReuse && q.r.job.Reuse == nil { // a pressed cache lacks tokens, a blended one is not exact: nobody may reuse them
			tokens = q.tokens()
		}
		l.s.cfg.Cache.Release(q.cache, q.r.job.Salt, tokens)
		q.cache = nil
		l.stalled = false
	}
}

// fail ends a request with an error: its caches go back and its reader
// gets one last event carrying err.
func (l *loopState) fail(r *request, err error) {
	if r.ended {
		return
	}
	why := FinishError
	if ce := r.ctx.Err(); (ce != nil && errors.Is(err, ce)) || errors.Is(err, ErrClosed) {
		why = FinishCancelled
	}
	for _, q := range r.seqs {
		if !q.done {
			l.release(q, why == FinishCancelled) // a failed pass may have left it half written
			l.obs.Finished(why, len(q.out))
		}
	}
	r.live = 0
	r.ended = true
	r.stream.push(true, r.usage(), Event{Token: -1, Err: err})
}

// shutdown ends every queued and running request with ErrClosed.
func (l *loopState) shutdown() {
	s := l.s
	s.mu.Lock()
	queued := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, r := range queued {
		l.fail(r, ErrClosed)
	}
	for _, r := range l.running {
		l.fail(r, ErrClosed)
	}
	l.running = nil
	l.publish()
}
