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
	// MinP drops tokens whose probability (after temperature) is below
	// MinP times the most likely token's; 0 keeps all (vLLM's min_p).
	MinP float64
	// PresencePenalty and FrequencyPenalty, in [-2, 2], lower the logits
	// of tokens already generated: by PresencePenalty once, and by
	// FrequencyPenalty per occurrence (OpenAI's definitions).
	PresencePenalty, FrequencyPenalty float64
	// RepetitionPenalty, when not 0 or 1, divides the positive logits and
	// multiplies the negative ones of tokens in the prompt or the output
	// (transformers' and vLLM's repetition_penalty).
	RepetitionPenalty float64
	// LogitBias is added to the logits of the tokens it names, each in
	// [-100, 100]; -100 in effect bans a token.
	LogitBias map[int]float32
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
	return s.validatePenalties()
}

// Sampler draws tokens from logits. It keeps its random state and scratch
// space between calls, so one Sampler serves one sequence.
type Sampler struct {
	p     Sampling
	rng   *rand.Rand
	cands []candidate

	seenPrompt map[int]bool // the prompt's tokens, for the repetition penalty
	counts     map[int]int  // generated tokens, for the penalties
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
// temperature, then top-k, then top-p, then min-p. Logits of −∞ (masked
// tokens) are never drawn.
func (s *Sampler) Sample(logits []float32) int {
	if s.p.Temperature == 0 {
		return Argmax(logits)
	}
	c := s.cands[:0]
	for i, v := range logits {
		c = append(c, candidate{i, float64(v) / s.p.Temperature})
	}
	sort.Slice(c, func(a, b int) bool { return c[a].p > c[b].p })
	for len(c) > 1 && math.IsInf(c[len(c)-1].p, -1) {
		c = c[:len(c)-1]
	}
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
	if mp := s.p.MinP; mp > 0 {
		floor := c[0].p * mp
		cut := len(c)
		for i := range c {
			if c[i].p < floor {
				cut = i
				break
			}
		}
		for _, x := range c[cut:] {
			sum -= x.p
		}
		c = c[:cut]
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
