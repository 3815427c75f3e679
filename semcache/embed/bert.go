package embed

import (
	"context"
	"fmt"
)

// BERT is a native BERT-family sentence encoder.
type BERT struct{}

// LoadBERT loads an encoder folder.
func LoadBERT(dir string) (*BERT, error) {
	return nil, fmt.Errorf("bert:%s: not yet", dir)
}

// Name returns "bert:DIR".
func (b *BERT) Name() string { return "bert" }

// Embed encodes texts.
func (b *BERT) Embed(ctx context.Context, texts []string) ([][]float32, error) { return nil, nil }
