// Package engine turns a model into text: it loads a model folder with its
// tokenizer and chat template, runs prompts, samples tokens and stops where
// the request or the model says.
package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sampling holds the parameters that choose the next token.
type Sampling struct {
	// Temperature divides the logits; 0 means greedy decoding.
	Temperature float64
	// TopK keeps only the K most likely tokens; 0 keeps all.
	TopK int
	// TopP keeps the smallest set of tokens whose probability reaches P;
	// 0 or 1 keeps all.
	TopP float64
	// Seed makes sampling repeatable.
	Seed uint64
}

// Validate reports a parameter outside its range.
func (s Sampling) Validate() error {
	switch {
	case s.Temperature < 0 || math.IsNaN(s.Temperature) || math.IsInf(s.Temperature, 0):
		return fmt.Errorf("temperature %v must be ≥ 0", s.Temperature)
	case s.TopK < 0:
		return fmt.Errorf("top-k %d must be ≥ 0", s.TopK)
	case s.TopP < 0 || s.TopP > 1 || math.IsNaN(s.TopP):
		return fmt.Errorf("top-p %v must be in [0, 1]", s.TopP)
	}
	return nil
}

// Sampler draws tokens from logits. It keeps its random state and scratch
// space between calls, so one Sampler serves one sequence.
type Sampler struct {
	p     Sampling
	rng   *rand.Rand
	cands []candidate
}

type candidate struct {
	id int
	p  float64
}

// NewSampler returns a sampler for the given parameters.
func NewSampler(p Sampling) *Sampler {
	return &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))}
}

// Argmax returns the index of the largest logit (the first on ties).
func Argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return best
}

// Sample picks a token id. The order of the filters follows transformers:
// temperature, then top-k, then top-p.
func (s *Sampler) Sample(logits []float32) int {
	if s.p.Temperature == 0 {
		return Argmax(logits)
	}
	c := s.cands[:0]
	for i, v := range logits {
		c = append(c, candidate{i, float64(v) / s.p.Temperature})
	}
	sort.Slice(c, func(a, b int) bool { return c[a].p > c[b].p })
	if k := s.p.TopK; k > 0 && k < len(c) {
		c = c[:k]
	}
	top := c[0].p
	var sum float64
	for i := range c {
		c[i].p = math.Exp(c[i].p - top)
		sum += c[i].p
	}
	for i := range c {
		c[i].p /= sum
	}
	if p := s.p.TopP; p > 0 && p < 1 {
		var acc float64
		for i := range c {
			acc += c[i].p
			if acc >= p {
				c = c[:i+1]
				break
			}
		}
		sum = acc
	} else {
		sum = 1
	}
	s.cands = c
	r := s.rng.Float64() * sum
	for _, x := range c {
		r -= x.p
		if r < 0 {
			return x.id
		}
	}
	return c[len(c)-1].id
}
