package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Request is one generation.
type Request struct {
	Prompt    []int
	MaxTokens int // new tokens at most; ≤ 0 means up to the context length
	Sampling  Sampling
	// IgnoreEOS keeps generating through stop tokens.
	IgnoreEOS bool
	// KeepLogits returns the logits at the last prompt position.
	KeepLogits bool
	// Retrieve, if set, chooses the cached tokens each decode step attends
	// to (package retrieve); it serves this request's cache only.
	Retrieve model.Retriever
}

// Finish says why generation ended.
type Finish string

// Reasons generation ends.
const (
	FinishStop   Finish = "stop"   // a stop token was produced
	FinishLength Finish = "length" // max tokens or the context length reached
)

// Result is a finished generation.
type Result struct {
	Output     []int
	Finish     Finish
	LastLogits []float32 // with KeepLogits
	// PrefillCacheBytes is the KV cache's size once the prompt is in it.
	PrefillCacheBytes int64
}

// PromptError is returned for a prompt the model cannot take.
type PromptError struct{ Msg string }

func (e *PromptError) Error() string { return e.Msg }

// Generate runs the prompt through the model and samples new tokens, calling
// emit after each one (a stop token is not emitted). cache may already hold
// a prefix of the prompt: only the tokens after cache.Next() are computed,
// so a caller that keeps the cache of an earlier turn reuses it. Generate
// stops early when ctx is cancelled or emit returns an error.
func (b *Bundle) Generate(ctx context.Context, cache *kvcache.Seq, req Request, emit func(id int) error) (*Result, error) {
	net := b.Net
	limit := net.Config.MaxPositions
	if len(req.Prompt) == 0 {
		return nil, &PromptError{"prompt is empty"}
	}
	if len(req.Prompt) >= limit {
		return nil, &PromptError{fmt.Sprintf("prompt has %d tokens; the model's context is %d, leaving no room to generate", len(req.Prompt), limit)}
	}
	if err := req.Sampling.Validate(); err != nil {
		return nil, err
	}
	if cache.Next() > len(req.Prompt) {
		return nil, fmt.Errorf("engine: cache holds %d tokens, more than the %d-token prompt", cache.Next(), len(req.Prompt))
	}
	maxNew := limit - len(req.Prompt)
	if req.MaxTokens > 0 {
		maxNew = min(maxNew, req.MaxTokens)
	}
	todo := req.Prompt[cache.Next():]
	if len(todo) == 0 { // the whole prompt is cached: recompute its last token
		if err := cache.Truncate(len(req.Prompt) - 1); err != nil {
			return nil, err
		}
		todo = req.Prompt[len(req.Prompt)-1:]
	}
	res := &Result{Finish: FinishLength}
	logits, err := b.prefill(ctx, cache, todo, req.Retrieve)
	if err != nil {
		return nil, err
	}
	res.PrefillCacheBytes = cache.Bytes()
	if req.KeepLogits {
		res.LastLogits = slices.Clone(logits)
	}
	sampler := NewSampler(req.Sampling)
	sampler.SetPrompt(req.Prompt)
	for len(res.Output) < maxNew {
		sampler.Adjust(logits)
		id := sampler.Sample(logits)
		sampler.Accepted(id)
		if !req.IgnoreEOS && slices.Contains(b.Stop, id) {
			res.Finish = FinishStop
			break
		}
		res.Output = append(res.Output, id)
		if emit != nil {
			if err := emit(id); err != nil {
				return res, err
			}
		}
		if len(res.Output) == maxNew {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if logits, err = net.ForwardRetrieve(cache, []int{id}, model.LastLogits, req.Retrieve); err != nil {
			return res, err
		}
	}
	return res, nil
}

// prefill runs the prompt in chunks, checking ctx between them.
func (b *Bundle) prefill(ctx context.Context, cache *kvcache.Seq, tokens []int, r model.Retriever) ([]float32, error) {
	var logits []float32
	for start := 0; start < len(tokens); start += model.ChunkSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(len(tokens), start+model.ChunkSize)
		out := model.NoLogits
		if end == len(tokens) {
			out = model.LastLogits
		}
		var err error
		if logits, err = b.Net.ForwardRetrieve(cache, tokens[start:end], out, r); err != nil {
			return nil, err
		}
	}
	return logits, nil
}
