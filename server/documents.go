package server

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/engine"
)

// maxDocuments bounds the documents of one request.
const maxDocuments = 64

// Documents, an extension of chat completions: a request may send
//
//	"documents": ["first passage …", "second passage …"]
//
// beside its messages. The documents are placed, in order and joined by a
// blank line, at the start of the last user message, followed by a blank
// line and that message's content — the layout of a retrieval-augmented
// prompt — and their KV is reused from the chunk cache wherever a request
// of the same tenant sent the same document before, in any position
// (package blend; the method is the server's --reuse, or the request's
// "kv_reuse"). usage.prompt_tokens_details.cached_tokens counts the reused
// tokens. Any OpenAI client can send it as an extra body field.

// placeDocuments checks the request's documents and returns the messages
// with the documents in the last user turn, and the documents' texts.
func (s *Server) placeDocuments(req *chatRequest, msgs []chatMessage) ([]chatMessage, []string, *apiError) {
	if s.cfg.Blender == nil {
		return nil, nil, invalid("documents", "unsupported_parameter", "documents are not enabled on this server")
	}
	if len(req.Documents) == 0 {
		return nil, nil, invalid("documents", "invalid_value", "documents must be a non-empty list of strings (leave the field out for none)")
	}
	if len(req.Documents) > maxDocuments {
		return nil, nil, invalid("documents", "invalid_value", "%d documents; at most %d", len(req.Documents), maxDocuments)
	}
	limit := s.b.ContextLength()
	docs := make([]string, len(req.Documents))
	for i, raw := range req.Documents {
		param := fmt.Sprintf("documents[%d]", i)
		if err := json.Unmarshal(raw, &docs[i]); err != nil {
			return nil, nil, invalid(param, "invalid_type", "%s must be a string of text, not %s", param, jsonKind(raw))
		}
		if strings.TrimSpace(docs[i]) == "" {
			return nil, nil, invalid(param, "invalid_value", "%s is empty", param)
		}
		if n := len(s.b.Tokenizer.Encode(docs[i])); n >= limit {
			return nil, nil, invalid(param, "context_length_exceeded", "%s is %d tokens; the model's context is %d", param, n, limit)
		}
	}
	last := -1
	for i, m := range msgs {
		if m.Role == "user" {
			last = i
		}
	}
	if last < 0 {
		return nil, nil, invalid("documents", "invalid_value", "documents go into the last user message, and messages hold none")
	}
	out := append([]chatMessage(nil), msgs...)
	out[last].Content = chatContent(strings.Join(docs, "\n\n") + "\n\n" + string(out[last].Content))
	return out, docs, nil
}

// reuseFor returns the job's Reuse for a rendered prompt with documents.
func (s *Server) reuseFor(req *chatRequest, text string, docs []string) (*engine.Reuse, *apiError) {
	name := s.cfg.Reuse
	if req.KVReuse != nil {
		name = *req.KVReuse
	}
	if name == "" {
		name = "cacheblend"
	}
	method, err := blend.Parse(name, 0)
	if err != nil {
		return nil, invalid("kv_reuse", "invalid_value", "%v", err)
	}
	p, err := blend.Split(text, docs, s.b.Tokenizer.Encode)
	if err != nil {
		return nil, invalid("documents", "invalid_value", "the chat template changed a document: %v", err)
	}
	return &engine.Reuse{Blender: s.cfg.Blender, Method: method, Prompt: p}, nil
}

// jsonKind names the JSON type of raw, for errors.
func jsonKind(raw json.RawMessage) string {
	switch t := strings.TrimSpace(string(raw)); {
	case t == "null":
		return "null"
	case strings.HasPrefix(t, "{"):
		return "an object"
	case strings.HasPrefix(t, "["):
		return "a list"
	case t == "true" || t == "false":
		return "a boolean"
	default:
		return "a number"
	}
}
