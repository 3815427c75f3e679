package engine

import (
	"context"
	"fmt"
	"time"
)

// Embeddings run through the scheduler like prompts: an EmbedJob waits in
// the same queue (ErrQueueFull past it), takes one place in the batch, and
// its inputs are computed one after the other in chunks under the same
// prefill budget as prompts — so decoding requests keep stepping while it
// runs — and it ends when its context does. Its KV cache is its own (never
// shared, never kept) and reused from one input to the next.

// EmbedJob asks for the pooled embeddings of token sequences.
type EmbedJob struct {
	Inputs [][]int
	// Salt names the tenant, for accounting; embeddings never share a
	// cache.
	Salt string
}

// SubmitEmbed queues an embeddings job. Its stream has one event per input
// (Choice is the input's index), with Embedding set to the mean of the
// input's final-normed hidden states; the last one also has Finish set.
func (s *Scheduler) SubmitEmbed(ctx context.Context, job EmbedJob) (*Stream, error) {
	limit, vocab := s.b.ContextLength(), s.b.Net.Config.VocabSize
	if len(job.Inputs) == 0 {
		return nil, &PromptError{"no inputs"}
	}
	longest := 0
	for i, ids := range job.Inputs {
		switch {
		case len(ids) == 0:
			return nil, &PromptError{fmt.Sprintf("input %d is empty", i)}
		case len(ids) > limit:
			return nil, &PromptError{fmt.Sprintf("input %d has %d tokens; the model's context is %d", i, len(ids), limit)}
		}
		for j, id := range ids {
			if id < 0 || id >= vocab {
				return nil, &PromptError{fmt.Sprintf("input %d: token %d at index %d is outside the vocabulary of %d", i, id, j, vocab)}
			}
		}
		longest = max(longest, len(ids))
	}
	reserve := s.cfg.Cache.SeqBytes(longest)
	if s.budget > 0 && reserve > s.budget {
		return nil, &PromptError{fmt.Sprintf("an input of %d tokens needs %d bytes of KV memory; the budget is %d", longest, reserve, s.budget)}
	}
	r := &request{
		ctx:     ctx,
		job:     Job{Prompt: job.Inputs[0], Salt: job.Salt, NoReuse: true, Sampling: Sampling{Temperature: 1, TopP: 1}},
		n:       1,
		reserve: reserve,
		stream:  newStream(len(job.Inputs), embedTokens(job.Inputs)),
		embed:   job.Inputs,
		pooled:  make([]float64, s.b.Net.Config.HiddenSize),
	}
	return r.stream, s.enqueue(r)
}

// enqueue adds a prepared request to the queue.
func (s *Scheduler) enqueue(r *request) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case len(s.queue) >= s.cfg.QueueSize:
		s.mu.Unlock()
		return ErrQueueFull
	}
	r.submitted = time.Now()
	s.queue = append(s.queue, r)
	s.stats.Queued = len(s.queue)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// embedTokens returns the tokens of all inputs.
func embedTokens(inputs [][]int) int {
	n := 0
	for _, in := range inputs {
		n += len(in)
	}
	return n
}

// embedded is called once an input of an embeddings request is computed:
// its embedding goes out, and the next input starts in the same cache, or
// the request ends.
func (l *loopState) embedded(r *request) {
	q := r.seqs[0]
	n := len(r.job.Prompt)
	vec := make([]float32, len(r.pooled))
	for i, v := range r.pooled {
		vec[i] = float32(v / float64(n))
	}
	ev := Event{Choice: r.input, Token: -1, Embedding: vec}
	if r.input+1 < len(r.embed) {
		r.stream.push(false, r.usage(), ev)
		if err := q.cache.Truncate(0); err != nil {
			l.fail(r, err)
			return
		}
		clear(r.pooled)
		r.input++
		r.job.Prompt = r.embed[r.input]
		l.totals.PromptTokens += int64(len(r.job.Prompt))
		return
	}
	l.release(q, false)
	r.live = 0
	r.ended = true
	l.obs.Finished(FinishStop, 0)
	ev.Finish = FinishStop
	r.stream.push(true, r.usage(), ev)
}

// embedShare is the fraction of the prefill budget that embeddings get
// per step while completions run beside them: embeddings are batch work,
// and a completion waiting on a step that computes 256 of their tokens
// would see every one of its tokens slowed down.
const embedShare = 8

// embedBudget returns the most tokens an embeddings request computes this
// step: all of budget when only embeddings run, budget/embedShare (at
// least 16) when a completion is in the batch.
func (l *loopState) embedBudget(budget int) int {
	for _, r := range l.running {
		if r.embed == nil && !r.ended {
			return max(16, budget/embedShare)
		}
	}
	return budget
}
