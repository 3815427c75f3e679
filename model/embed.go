package model

import (
	"fmt"

	"github.com/kvserve/kvserve/compute"
)

// Embedding runs tokens through the model with a fresh cache and returns the
// mean of their final hidden states after the model's final norm: one
// hidden-size vector, the pooled embedding of the text.
func (m *Model) Embedding(tokens []int) ([]float32, error) {
	c := m.Config
	if len(tokens) == 0 {
		return nil, fmt.Errorf("model: embedding of zero tokens")
	}
	cache := m.NewCache()
	steps := []Step{{Cache: cache, Tokens: tokens, Output: NoLogits}}
	if err := m.checkSteps(steps); err != nil {
		return nil, err
	}
	h := c.HiddenSize
	sum := make([]float64, h)
	row := make([]float32, h)
	m.mu.Lock()
	defer m.mu.Unlock()
	for start := 0; start < len(tokens); start += ChunkSize {
		end := min(len(tokens), start+ChunkSize)
		steps[0] = Step{Cache: cache, Tokens: tokens[start:end], Output: NoLogits}
		m.pass(steps)
		for t := range end - start {
			compute.RMSNorm(row, m.ws.x[t*h:(t+1)*h], m.Norm, c.RMSNormEps, c.NormAddOne)
			for i, v := range row {
				sum[i] += float64(v)
			}
		}
	}
	out := make([]float32, h)
	for i, v := range sum {
		out[i] = float32(v / float64(len(tokens)))
	}
	return out, nil
}

// addPooled adds the final-normed hidden states of tokens from … from+n-1
// of the pass to sum.
func (m *Model) addPooled(sum []float64, from, n int) {
	c := m.Config
	h := c.HiddenSize
	row := make([]float32, h)
	for t := from; t < from+n; t++ {
		compute.RMSNorm(row, m.ws.x[t*h:(t+1)*h], m.Norm, c.RMSNormEps, c.NormAddOne)
		for i, v := range row[:len(sum)] {
			sum[i] += float64(v)
		}
	}
}
