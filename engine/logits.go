package engine

import (
	"fmt"
	"math"
)

// This file holds what happens to a row of logits between the forward pass
// and the draw: log-probabilities for the client, the logit processors of
// OpenAI and vLLM (logit bias, presence, frequency and repetition
// penalties) and a grammar's token mask.

// MaxTopLogprobs is the most alternatives a token's logprobs may list, as
// in OpenAI's API.
const MaxTopLogprobs = 20

// TokenLogprob is one token with its log-probability.
type TokenLogprob struct {
	Token   int
	Logprob float32
}

// Logprob is a sampled (or prompt) token's log-probability under the
// model's own distribution, log-softmax of the raw logits — before
// temperature, penalties, bias or grammar — with the most likely tokens
// at that position, best first.
type Logprob struct {
	TokenLogprob
	Top []TokenLogprob
}

// logSumExp returns log Σ exp(x) over the row, in float64.
func logSumExp(row []float32) float64 {
	hi := math.Inf(-1)
	for _, v := range row {
		if float64(v) > hi {
			hi = float64(v)
		}
	}
	if math.IsInf(hi, 0) {
		return hi
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - hi)
	}
	return hi + math.Log(sum)
}

// logprobOf returns the log-probability of id in row and, with k > 0, the
// k most likely tokens (ties to the lower id).
func logprobOf(row []float32, id, k int) Logprob {
	lse := logSumExp(row)
	lp := Logprob{TokenLogprob: TokenLogprob{Token: id, Logprob: float32(float64(row[id]) - lse)}}
	if k <= 0 {
		return lp
	}
	k = min(k, len(row))
	top := make([]TokenLogprob, 0, k)
	for i, v := range row {
		if len(top) == k && v <= top[k-1].Logprob {
			continue
		}
		j := len(top)
		if j < k {
			top = append(top, TokenLogprob{})
		} else {
			j = k - 1
		}
		for j > 0 && top[j-1].Logprob < v {
			top[j] = top[j-1]
			j--
		}
		top[j] = TokenLogprob{Token: i, Logprob: v}
	}
	for i := range top {
		top[i].Logprob = float32(float64(top[i].Logprob) - lse)
	}
	lp.Top = top
	return lp
}

// Grammar constrains what a choice may generate (structured output, tool
// calls). Each choice gets its own Matcher.
type Grammar interface {
	NewMatcher() Matcher
}

// Matcher follows one choice through a grammar.
type Matcher interface {
	// FillMask sets, in the bit set mask (bit id of word id/64), the
	// tokens that may come next; it clears every other bit. Stop tokens
	// are the scheduler's business: it allows them when CanEnd says so.
	FillMask(mask []uint64)
	// Accept advances over a sampled token; false means the grammar does
	// not allow it (the mask was not applied).
	Accept(id int) bool
	// CanEnd reports whether the text so far is complete.
	CanEnd() bool
}

// validatePenalties checks the logit processors' parameters.
func (s Sampling) validatePenalties() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	switch {
	case bad(s.PresencePenalty) || s.PresencePenalty < -2 || s.PresencePenalty > 2:
		return fmt.Errorf("presence penalty %v must be in [-2, 2]", s.PresencePenalty)
	case bad(s.FrequencyPenalty) || s.FrequencyPenalty < -2 || s.FrequencyPenalty > 2:
		return fmt.Errorf("frequency penalty %v must be in [-2, 2]", s.FrequencyPenalty)
	case bad(s.RepetitionPenalty) || s.RepetitionPenalty < 0:
		return fmt.Errorf("repetition penalty %v must be > 0 (1 or 0 for none)", s.RepetitionPenalty)
	case bad(s.MinP) || s.MinP < 0 || s.MinP > 1:
		return fmt.Errorf("min-p %v must be in [0, 1]", s.MinP)
	}
	for id, b := range s.LogitBias {
		if id < 0 {
			return fmt.Errorf("logit bias for token %d: not a token id", id)
		}
		if math.IsNaN(float64(b)) || b < -100 || b > 100 {
			return fmt.Errorf("logit bias %v for token %d must be in [-100, 100]", b, id)
		}
	}
	return nil
}

// adjusts reports whether the sampler changes logits before drawing.
func (s *Sampler) adjusts() bool {
	p := s.p
	return len(p.LogitBias) > 0 || p.PresencePenalty != 0 || p.FrequencyPenalty != 0 || (p.RepetitionPenalty != 0 && p.RepetitionPenalty != 1)
}

// SetPrompt tells the sampler the prompt's tokens, which the repetition
// penalty counts as seen (as vLLM and transformers do).
func (s *Sampler) SetPrompt(prompt []int) {
	if s.p.RepetitionPenalty == 0 || s.p.RepetitionPenalty == 1 {
		return
	}
	s.seenPrompt = make(map[int]bool, len(prompt))
	for _, id := range prompt {
		s.seenPrompt[id] = true
	}
}

// Adjust applies, in place, the logit bias, then the repetition penalty
// (positive logits divided by it, negative ones multiplied, for tokens of
// the prompt or the output), then OpenAI's presence and frequency
// penalties (logit − presence·[count > 0] − frequency·count over the
// output).
func (s *Sampler) Adjust(logits []float32) {
	if !s.adjusts() {
		return
	}
	p := s.p
	for id, b := range p.LogitBias {
		if id < len(logits) {
			logits[id] += b
		}
	}
	if rp := float32(p.RepetitionPenalty); rp != 0 && rp != 1 {
		pen := func(id int) {
			if id < 0 || id >= len(logits) {
				return
			}
			if logits[id] > 0 {
				logits[id] /= rp
			} else {
				logits[id] *= rp
			}
		}
		for id := range s.seenPrompt {
			pen(id)
		}
		for id := range s.counts {
			if !s.seenPrompt[id] {
				pen(id)
			}
		}
	}
	if p.PresencePenalty != 0 || p.FrequencyPenalty != 0 {
		for id, n := range s.counts {
			if id < len(logits) {
				logits[id] -= float32(p.PresencePenalty + p.FrequencyPenalty*float64(n))
			}
		}
	}
}

// Accepted counts a generated token for the penalties.
func (s *Sampler) Accepted(id int) {
	if !s.adjusts() {
		return
	}
	if s.counts == nil {
		s.counts = make(map[int]int)
	}
	s.counts[id]++
}

// applyMask sets to −∞ the logits of tokens whose bit is clear.
func applyMask(logits []float32, mask []uint64) {
	inf := float32(math.Inf(-1))
	for w, bits := range mask {
		if bits == ^uint64(0) {
			continue
		}
		base := w * 64
		for b := 0; b < 64 && base+b < len(logits); b++ {
			if bits&(1<<b) == 0 {
				logits[base+b] = inf
			}
		}
	}
}
