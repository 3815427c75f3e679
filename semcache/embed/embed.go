// Package embed holds the embedders of the semantic cache: the served
// model's pooled hidden states, a native BERT-family encoder folder
// (sentence-transformers layout), any OpenAI-compatible /v1/embeddings URL,
// and a feature-hashing embedder that needs no model.
package embed

import (
	"context"
	"fmt"
	"strings"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/semcache"
)

// Open returns the embedder a spec names:
//
//	model          the served model's mean-pooled final hidden states (needs b)
//	hash           word and character n-gram feature hashing (no model)
//	bert:DIR       a BERT-family encoder folder as sentence-transformers saves it
//	http(s)://URL  an OpenAI-compatible server's /v1/embeddings (URL is its
//	               base, e.g. http://host:8000; add #NAME to send model NAME)
func Open(spec string, b *engine.Bundle) (semcache.Embedder, error) {
	switch {
	case spec == "model":
		if b == nil {
			return nil, fmt.Errorf("embedder model: no model loaded")
		}
		return NewModel(b), nil
	case spec == "hash":
		return NewHash(512), nil
	case strings.HasPrefix(spec, "bert:"):
		return LoadBERT(strings.TrimPrefix(spec, "bert:"))
	case strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://"):
		url, name, _ := strings.Cut(spec, "#")
		return NewHTTP(url, name, ""), nil
	}
	return nil, fmt.Errorf("embedder %q: want model, hash, bert:DIR or an http(s):// URL", spec)
}

// Model embeds with the served model: the mean of its final-normed hidden
// states over the text's tokens, as /v1/embeddings answers.
type Model struct{ b *engine.Bundle }

// NewModel returns the pooled-embedding embedder of b.
func NewModel(b *engine.Bundle) *Model { return &Model{b: b} }

// Name returns "model:NAME".
func (m *Model) Name() string { return "model:" + m.b.Name }

// Embed runs each text through the model, one forward pass each.
func (m *Model) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	limit := m.b.ContextLength()
	for i, t := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ids := m.b.Tokenizer.Encode(t)
		if len(ids) == 0 {
			ids = m.b.Tokenizer.Encode(" ")
		}
		if len(ids) > limit {
			ids = ids[:limit]
		}
		v, err := m.b.Net.Embedding(ids)
		if err != nil {
			return nil, fmt.Errorf("embedding with %s: %w", m.b.Name, err)
		}
		out[i] = semcache.Normalize(v)
	}
	return out, nil
}
