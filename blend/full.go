package blend

import (
	"slices"

	"github.com/kvserve/kvserve/model"
)

// Full computes the whole prompt, reusing nothing: the baseline every
// reuse method is measured against.
type Full struct{}

// Name returns "full".
func (Full) Name() string { return "full" }

// Prefill computes every token of p.
func (Full) Prefill(b *Blender, salt string, p Prompt) (*Result, error) {
	tokens := p.Tokens()
	cache := b.Chunks.Pool().NewSeq()
	logits, err := b.Net.Forward(cache, tokens, model.LastLogits)
	if err != nil {
		cache.Release()
		return nil, err
	}
	return &Result{Cache: cache, Logits: slices.Clone(logits), Tokens: len(tokens)}, nil
}
