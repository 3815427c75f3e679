package engine

import (
	"context"
	"strings"
	"time"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/tokenizer"
)

// request is a submitted Job as the scheduler's loop sees it.
type request struct {
	ctx       context.Context
	job       Job
	n         int   // choices
	maxNew    int   // new tokens per choice at most
	reserve   int64 // KV bytes held back for it while it runs
	stream    *Stream
	submitted time.Time
	skipped   int // times a later request was admitted first

	// Owned by the loop.
	seqs       []*seq          // one per choice; seqs[0] reads the prompt
	observer   *model.Observer // what the job's press needs recorded, while prefilling
	cached     int             // prompt tokens found in the cache at admission
	prefilled  bool            // the prompt is in seqs[0]'s cache
	sawToken   bool            // the first token was sampled (TTFT observed)
	completion int             // tokens sampled over all choices
	live       int             // choices not finished
	ended      bool            // the stream has had its last event
	// pressedFrom and pressedTo are the prompt cache's bytes before and
	// after the press (0 without one).
	pressedFrom, pressedTo int64
	// pressed is set once the prompt's cache is compressed (a layered
	// prefill compresses as it computes; prefilled must not again).
	pressed bool

	// An embeddings request (embed.go): its inputs, the one being
	// computed (job.Prompt is embed[input]), and the sum of its pooled
	// hidden states so far.
	embed  [][]int
	input  int
	pooled []float64

	promptLP  []Logprob // the prompt's logprobs so far (Job.PromptLogprobs)
	allLogits []float32 // rows of a prompt chunk, for promptLP
}

// slots returns the batch places the request takes.
func (r *request) slots() int {
	if !r.prefilled {
		return r.n
	}
	return r.live
}

// held returns the KV bytes reserved for the request's live choices.
func (r *request) held() int64 {
	per := r.reserve / int64(r.n)
	if !r.prefilled {
		return r.reserve
	}
	return per * int64(r.live)
}

// usage returns the request's token counts so far.
func (r *request) usage() Usage {
	if r.embed != nil {
		return Usage{PromptTokens: embedTokens(r.embed)}
	}
	return Usage{PromptTokens: len(r.job.Prompt), CachedTokens: r.cached, CompletionTokens: r.completion,
		KVBytesBeforePress: r.pressedFrom, KVBytesAfterPress: r.pressedTo}
}

// seq is one choice of a request: its cache, sampler and output.
type seq struct {
	r       *request
	choice  int
	cache   *kvcache.Seq
	sampler *Sampler
	dec     *tokenizer.Stream
	stop    stopMatcher
	out     []int
	in      [1]int    // the token the next step feeds
	logits  []float32 // one vocab-sized row
	last    time.Time // when the previous token was sampled
	done    bool

	matcher Matcher         // the job's grammar for this choice, or nil
	mask    []uint64        // the matcher's token bit set
	raw     []float32       // the logits before they are adjusted, for logprobs
	retr    model.Retriever // the job's retrieval for this choice, if any
}

// tokens returns the ids that the sequence's cache holds.
func (q *seq) tokens() []int {
	all := make([]int, 0, len(q.r.job.Prompt)+len(q.out))
	all = append(append(all, q.r.job.Prompt...), q.out...)
	return all[:min(len(all), q.cache.Next())]
}

// stopMatcher finds stop strings in streamed text. It holds back the end
// of the text that could still grow into a stop string, so that no part of
// a stop string is ever handed out.
type stopMatcher struct {
	stops []string
	held  string
}

// push adds a piece of text and returns what may be handed out now; hit
// reports that a stop string was found, in which case text is everything
// before it and the matcher is spent.
func (m *stopMatcher) push(piece string) (text string, hit bool) {
	if len(m.stops) == 0 {
		return piece, false
	}
	buf := m.held + piece
	cut := -1
	for _, s := range m.stops {
		if i := strings.Index(buf, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		m.held = ""
		return buf[:cut], true
	}
	hold := 0
	for _, s := range m.stops {
		for k := min(len(s)-1, len(buf)); k > hold; k-- {
			if strings.HasSuffix(buf, s[:k]) {
				hold = k
				break
			}
		}
	}
	m.held = buf[len(buf)-hold:]
	return buf[:len(buf)-hold], false
}

// flush returns the text held back, once no more text will come.
func (m *stopMatcher) flush() string {
	t := m.held
	m.held = ""
	return t
}

// nopObserver is the Observer used when none is configured.
type nopObserver struct{}

// Admitted does nothing.
func (nopObserver) Admitted(time.Duration, int, int) {}

// FirstToken does nothing.
func (nopObserver) FirstToken(time.Duration) {}

// NextToken does nothing.
func (nopObserver) NextToken(time.Duration) {}

// Step does nothing.
func (nopObserver) Step(StepInfo) {}

// Finished does nothing.
func (nopObserver) Finished(Finish, int) {}
