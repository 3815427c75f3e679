package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/grammar"
)

// This file holds structured output: response_format json_object and
// json_schema, decoded under a grammar's token mask.

// responseFormat is the body's response_format.
type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict *bool           `json:"strict"`
	} `json:"json_schema"`
}

// boundGrammar is a grammar over the served model's vocabulary, as the
// engine wants it.
type boundGrammar struct {
	g *grammar.Grammar
	v *grammar.Vocab
}

// NewMatcher starts a choice in the grammar.
func (b boundGrammar) NewMatcher() engine.Matcher { return b.g.NewMatcher(b.v) }

// vocabs holds each served tokenizer's prepared vocabulary, built on
// first use (tens of milliseconds for a 150k vocabulary).
var vocabs sync.Map // *engine.Bundle → func() *grammar.Vocab

// vocab returns the bundle's prepared vocabulary.
func (s *Server) vocab() *grammar.Vocab {
	f, _ := vocabs.LoadOrStore(s.b, sync.OnceValue(func() *grammar.Vocab {
		t := s.b.Tokenizer
		return grammar.NewVocab(s.b.Net.Config.VocabSize, func(id int) []byte {
			if id >= t.VocabSize() {
				return nil
			}
			return t.TokenBytes(id)
		}, func(id int) bool {
			return t.IsSpecial(id) || isControlToken(t.TokenString(id))
		})
	}))
	return f.(func() *grammar.Vocab)()
}

// isControlToken reports whether an added token looks like a template's
// control token (<|…|>), which constrained output never writes.
func isControlToken(s string) bool {
	return strings.HasPrefix(s, "<|") && strings.HasSuffix(s, "|>")
}

// parseResponseFormat reads response_format: text (the default),
// json_object (any JSON object), or json_schema (a value of the schema;
// strict or not, the schema is enforced the same way).
func (s *Server) parseResponseFormat(p *sampling, g *generation) *apiError {
	raw := bytes.TrimSpace(p.ResponseFormat)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var rf responseFormat
	if err := json.Unmarshal(raw, &rf); err != nil {
		return invalid("response_format", "invalid_type", "response_format: want {\"type\": \"text\" | \"json_object\" | \"json_schema\", …}: %v", err)
	}
	var gr *grammar.Grammar
	switch rf.Type {
	case "text":
		return nil
	case "json_object":
		gr = grammar.JSONObject()
	case "json_schema":
		if rf.JSONSchema == nil || len(bytes.TrimSpace(rf.JSONSchema.Schema)) == 0 {
			return invalid("response_format.json_schema.schema", "invalid_value", "response_format json_schema needs json_schema.schema")
		}
		var err error
		if gr, err = grammar.FromSchema(rf.JSONSchema.Schema); err != nil {
			return invalid("response_format.json_schema.schema", "invalid_value", "response_format json_schema: %v", err)
		}
	default:
		return invalid("response_format.type", "invalid_value", "response_format type %q: want text, json_object or json_schema", rf.Type)
	}
	if g.job.IgnoreEOS {
		return invalid("ignore_eos", "unsupported_parameter", "ignore_eos cannot be combined with response_format %s: the output ends where the JSON does", rf.Type)
	}
	g.job.Grammar = boundGrammar{gr, s.vocab()}
	g.structured = true
	return nil
}
