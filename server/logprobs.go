package server

import (
	"encoding/json"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/kvserve/kvserve/engine"
)

// This file holds log-probabilities: parsing logprobs and top_logprobs
// (chat) or logprobs and echo (legacy completions), and writing them in
// OpenAI's shapes.

// chatLogprobs is a chat choice's logprobs.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
	Refusal []chatTokenLogprob `json:"refusal"`
}

// chatTokenLogprob is one generated token: its text, logprob, UTF-8 bytes
// and the most likely tokens at its position.
type chatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// legacyLogprobs is a completion choice's logprobs, in the shape of
// OpenAI's legacy completions: parallel lists over the tokens (the
// prompt's first, with echo; the first prompt token has null entries).
type legacyLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// parseLogprobs reads the logprob fields into g. Chat takes logprobs
// (a boolean) and top_logprobs (0–20, only with logprobs); completions
// take logprobs (an integer 0–20: the alternatives per token) and echo
// (the prompt's text, and with logprobs its logprobs, before the output).
func (s *Server) parseLogprobs(p *sampling, g *generation) *apiError {
	raw := strings.TrimSpace(string(p.Logprobs))
	if g.chat {
		if p.Echo {
			return invalid("echo", "unsupported_parameter", "echo is a parameter of /v1/completions, not of chat")
		}
		var on bool
		if raw != "" && raw != "null" {
			if err := json.Unmarshal(p.Logprobs, &on); err != nil {
				return invalid("logprobs", "invalid_type", "logprobs: want a boolean, got %s (top_logprobs gives the number of alternatives)", raw)
			}
		}
		if p.TopLogprobs != nil {
			k := *p.TopLogprobs
			if k < 0 || k > engine.MaxTopLogprobs {
				return invalid("top_logprobs", "invalid_value", "top_logprobs %d must be in [0, %d]", k, engine.MaxTopLogprobs)
			}
			if !on && k > 0 {
				return invalid("top_logprobs", "invalid_value", "top_logprobs needs logprobs: true")
			}
			g.job.TopLogprobs = k
		}
		g.job.Logprobs = on
		return nil
	}
	if p.TopLogprobs != nil {
		return invalid("top_logprobs", "unsupported_parameter", "top_logprobs is a chat parameter; /v1/completions takes logprobs: N")
	}
	g.echo = p.Echo
	if raw == "" || raw == "null" {
		return nil
	}
	var k int
	if err := json.Unmarshal(p.Logprobs, &k); err != nil {
		return invalid("logprobs", "invalid_type", "logprobs: want an integer in [0, %d] (the alternatives per token), got %s", engine.MaxTopLogprobs, raw)
	}
	if k < 0 || k > engine.MaxTopLogprobs {
		return invalid("logprobs", "invalid_value", "logprobs %d must be in [0, %d]", k, engine.MaxTopLogprobs)
	}
	g.job.Logprobs, g.job.TopLogprobs = true, k
	g.job.PromptLogprobs = p.Echo
	return nil
}

// finite keeps JSON encodable a logprob that underflowed to −∞.
func finite(x float32) float64 {
	if math.IsInf(float64(x), -1) || math.IsNaN(float64(x)) {
		return -9999
	}
	return float64(x)
}

// tokenText returns a token's text (invalid UTF-8 replaced) and its bytes.
func (s *Server) tokenText(id int) (string, []int) {
	b := s.b.Tokenizer.TokenBytes(id)
	ints := make([]int, len(b))
	for i, c := range b {
		ints[i] = int(c)
	}
	if utf8.Valid(b) {
		return string(b), ints
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), ints
}

// chatLogprobsOf writes generated tokens' logprobs in the chat shape.
func (s *Server) chatLogprobsOf(lps []engine.Logprob) json.RawMessage {
	out := chatLogprobs{Content: make([]chatTokenLogprob, len(lps))}
	for i, lp := range lps {
		tok, b := s.tokenText(lp.Token)
		c := chatTokenLogprob{Token: tok, Logprob: finite(lp.Logprob), Bytes: b, TopLogprobs: make([]chatTopLogprob, len(lp.Top))}
		for j, t := range lp.Top {
			tt, tb := s.tokenText(t.Token)
			c.TopLogprobs[j] = chatTopLogprob{Token: tt, Logprob: finite(t.Logprob), Bytes: tb}
		}
		out.Content[i] = c
	}
	data, _ := json.Marshal(out)
	return data
}

// legacyLogprobsOf writes logprobs in the completions shape: with
// prompt, the prompt's tokens come first (the first one without a
// logprob); offset is the text offset of the first token.
func (s *Server) legacyLogprobsOf(prompt []int, promptLPs, lps []engine.Logprob, offset int) json.RawMessage {
	out := legacyLogprobs{Tokens: []string{}, TokenLogprobs: []*float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	add := func(id int, lp *engine.Logprob) {
		tok, _ := s.tokenText(id)
		out.Tokens = append(out.Tokens, tok)
		out.TextOffset = append(out.TextOffset, offset)
		offset += len(tok)
		if lp == nil {
			out.TokenLogprobs = append(out.TokenLogprobs, nil)
			out.TopLogprobs = append(out.TopLogprobs, nil)
			return
		}
		v := finite(lp.Logprob)
		out.TokenLogprobs = append(out.TokenLogprobs, &v)
		top := make(map[string]float64, len(lp.Top))
		for _, t := range lp.Top {
			tt, _ := s.tokenText(t.Token)
			if _, dup := top[tt]; !dup { // two tokens may read alike
				top[tt] = finite(t.Logprob)
			}
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
	}
	for i, id := range prompt {
		if i == 0 || i-1 >= len(promptLPs) {
			add(id, nil)
			continue
		}
		add(id, &promptLPs[i-1])
	}
	for i := range lps {
		add(lps[i].Token, &lps[i])
	}
	data, _ := json.Marshal(out)
	return data
}
