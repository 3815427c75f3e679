package server

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/kvserve/kvserve/tokenizer"
)

// This file bounds what one request may cost before the engine sees it:
// the body's size (known from Content-Length before a byte is read), how
// long the body may take to arrive, and the prompt's length, checked in
// bytes before tokenizing and then by a tokenization that stops once the
// context is exceeded.

// Defaults of the bounds.
const (
	maxBodyCeiling   = 16 << 20         // the default body limit never exceeds it
	bodySlack        = 1 << 20          // room for JSON around the texts
	jsonEscapeFactor = 6                // "\u0041" is six bytes for one
	defaultBodyTime  = 20 * time.Second // Config.BodyTimeout
	defaultWriteTime = 30 * time.Second // Config.WriteTimeout
)

// defaultMaxBody returns the body limit used when Config.MaxBodyBytes is
// 0: room for the longest text the model can take (its context, or the
// embeddings' token cap, times the tokenizer's longest token), escaped as
// JSON at worst, plus 1 MiB; at most 16 MiB.
func (s *Server) defaultMaxBody() int64 {
	per := int64(s.b.Tokenizer.MaxTokenBytes())
	if per <= 0 {
		return maxBodyCeiling
	}
	tokens := int64(max(s.b.ContextLength(), s.cfg.EmbedMaxTokens))
	return min(maxBodyCeiling, bodySlack+jsonEscapeFactor*per*tokens)
}

// readBody reads a request body of at most s.cfg.MaxBodyBytes, refusing a
// larger declared Content-Length at once and a body that takes longer than
// the body timeout to arrive.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	limit := s.cfg.MaxBodyBytes
	tooLarge := func() *apiError {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body is over %d bytes, the most this server takes for a model of %d tokens of context (kvserve serve --max-body raises it)", limit, s.b.ContextLength()), Type: "invalid_request_error", Code: strp("body_too_large")}
	}
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close") // the body is not read
		return nil, tooLarge()
	}
	rc := http.NewResponseController(w)
	if s.cfg.BodyTimeout > 0 {
		rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	if err == nil && s.cfg.BodyTimeout > 0 {
		// Once read, no deadline: the server watches the connection for
		// the client going away while the request runs. (After a failed
		// read the deadline stays, so that the server does not wait for
		// the rest of the body before closing.)
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mb *http.MaxBytesError
		switch {
		case errors.As(err, &mb):
			return nil, tooLarge()
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			return nil, &apiError{Status: http.StatusRequestTimeout, Message: fmt.Sprintf("the request body did not arrive within %v", s.cfg.BodyTimeout), Type: "invalid_request_error", Code: strp("body_timeout")}
		}
		return nil, invalid("", "invalid_body", "reading the request body: %v", err)
	}
	return buf.Bytes(), nil
}

// encodePrompt tokenizes a prompt text, or says it cannot fit: texts
// longer than the context times the longest token are refused unread, and
// tokenization stops as soon as the context is exceeded, so a huge prompt
// costs no more than one that fits. Special tokens written in the text are
// recognised unless asText.
func (s *Server) encodePrompt(text, param string, limit int, opts tokenizer.EncodeOptions) ([]int, *apiError) {
	opts.MaxTokens = limit
	ids, err := s.b.Tokenizer.EncodeWith(text, opts)
	var tl *tokenizer.TooLongError
	if errors.As(err, &tl) {
		return nil, invalid(param, "context_length_exceeded",
			"This model's maximum context length is %d tokens. However, your %s (%d bytes) resulted in more than %d tokens; shorten it.", s.b.ContextLength(), param, tl.Bytes, limit)
	}
	return ids, nil
}

// setDefaults fills the zero fields of the hostile-input bounds.
func (c *Config) setDefaults(b interface{ ContextLength() int }) {
	switch {
	case c.BodyTimeout == 0:
		c.BodyTimeout = defaultBodyTime
	case c.BodyTimeout < 0:
		c.BodyTimeout = 0
	}
	switch {
	case c.WriteTimeout == 0:
		c.WriteTimeout = defaultWriteTime
	case c.WriteTimeout < 0:
		c.WriteTimeout = 0
	}
	if c.EmbedMaxInputs <= 0 {
		c.EmbedMaxInputs = defaultEmbedInputs
	}
	if c.EmbedMaxTokens <= 0 {
		c.EmbedMaxTokens = 4 * b.ContextLength()
	}
	if c.AnonymousCache == "" {
		c.AnonymousCache = AnonymousClient
	}
}

// defaultEmbedInputs is Config.EmbedMaxInputs's default.
const defaultEmbedInputs = 256

// embedInputs tokenizes an embeddings request's inputs under its bounds:
// at most Config.EmbedMaxInputs inputs, each within the context, all of
// them within Config.EmbedMaxTokens tokens together. Tokenization stops
// at the first input past a bound.
func (s *Server) embedInputs(in *promptInput) ([][]int, *apiError) {
	if n := in.count(); n > s.cfg.EmbedMaxInputs {
		return nil, invalid("input", "too_many_inputs", "%d inputs in one request; at most %d (kvserve serve --embed-max-inputs)", n, s.cfg.EmbedMaxInputs)
	}
	total, capTokens := 0, s.cfg.EmbedMaxTokens
	tooMany := func() *apiError {
		return invalid("input", "too_many_tokens", "the inputs have more than %d tokens together, the most one request may have (kvserve serve --embed-max-tokens); split them over several requests", capTokens)
	}
	inputs := make([][]int, 0, in.count())
	for _, ids := range in.IDs {
		if total += len(ids); total > capTokens {
			return nil, tooMany()
		}
		inputs = append(inputs, ids)
	}
	for _, t := range in.Texts {
		limit := s.b.ContextLength()
		ids, e := s.encodePrompt(t, "input", limit, tokenizer.EncodeOptions{})
		if e != nil {
			return nil, e
		}
		if total += len(ids); total > capTokens {
			return nil, tooMany()
		}
		inputs = append(inputs, ids)
	}
	return inputs, nil
}

// longestJSONString returns a lower bound on the decoded length of the
// longest string in a JSON text, found without decoding it: a raw scan for
// string literals, each escape counted as one byte. Text that is not JSON
// gives some number; the decoder reports the error.
func longestJSONString(data []byte) int {
	longest := 0
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		n := 0
		j := i + 1
		for j < len(data) && data[j] != '"' {
			if data[j] == '\\' && j+1 < len(data) {
				if data[j+1] == 'u' {
					j += 4
				}
				j++
			}
			j++
			n++
		}
		longest = max(longest, n)
		i = j
	}
	return longest
}

// checkStrings refuses a request body holding a string longer than the
// longest text the model can take (its context × the tokenizer's longest
// token), before the body is decoded: decoding 15 MB of JSON takes a
// second, this scan a few milliseconds.
func (s *Server) checkStrings(data []byte) *apiError {
	per := s.b.Tokenizer.MaxTokenBytes()
	if per <= 0 || len(data) <= s.b.ContextLength()*per {
		return nil
	}
	bound := s.b.ContextLength() * per
	if n := longestJSONString(data); n > bound {
		return invalid("", "context_length_exceeded", "This model's maximum context length is %d tokens. However, the request holds a string of at least %d bytes, more than %d tokens can (at most %d bytes a token); shorten it.", s.b.ContextLength(), n, s.b.ContextLength(), per)
	}
	return nil
}
