package server

import (
	"math"
	"strconv"

	"github.com/kvserve/kvserve/engine"
)

// parsePenalties reads the logit processors' fields into the job:
// presence_penalty and frequency_penalty (OpenAI, [-2, 2]), logit_bias
// (token id → bias in [-100, 100]), and vLLM's repetition_penalty (> 0)
// and min_p ([0, 1]).
func (s *Server) parsePenalties(p *sampling, job *engine.Job) *apiError {
	sp := &job.Sampling
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	if v := p.PresencePenalty; v != nil {
		if bad(*v) || *v < -2 || *v > 2 {
			return invalid("presence_penalty", "invalid_value", "presence_penalty %v must be in [-2, 2]", *v)
		}
		sp.PresencePenalty = *v
	}
	if v := p.FrequencyPenalty; v != nil {
		if bad(*v) || *v < -2 || *v > 2 {
			return invalid("frequency_penalty", "invalid_value", "frequency_penalty %v must be in [-2, 2]", *v)
		}
		sp.FrequencyPenalty = *v
	}
	if v := p.RepetitionPenalty; v != nil {
		if bad(*v) || *v <= 0 {
			return invalid("repetition_penalty", "invalid_value", "repetition_penalty %v must be > 0 (1 for none)", *v)
		}
		sp.RepetitionPenalty = *v
	}
	if v := p.MinP; v != nil {
		if bad(*v) || *v < 0 || *v > 1 {
			return invalid("min_p", "invalid_value", "min_p %v must be in [0, 1]", *v)
		}
		sp.MinP = *v
	}
	if len(p.LogitBias) > 0 {
		vocab := s.b.Net.Config.VocabSize
		sp.LogitBias = make(map[int]float32, len(p.LogitBias))
		for k, v := range p.LogitBias {
			id, err := strconv.Atoi(k)
			if err != nil || id < 0 || id >= vocab {
				return invalid("logit_bias", "invalid_value", "logit_bias key %q must be a token id in [0, %d)", k, vocab)
			}
			f, ok := v.(float64)
			if !ok || bad(f) || f < -100 || f > 100 {
				return invalid("logit_bias", "invalid_value", "logit_bias[%q] must be a number in [-100, 100]", k)
			}
			sp.LogitBias[id] = float32(f)
		}
	}
	return nil
}
