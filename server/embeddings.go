package server

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
)

// embeddings answers POST /v1/embeddings: each input's embedding is the
// mean of the model's final-normed hidden states over its tokens, scaled
// to unit length as OpenAI's are. Inputs run one after another, each in
// one forward pass of its own (between the scheduler's steps).
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if e := s.decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := s.checkModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		writeError(w, invalid("encoding_format", "invalid_value", "encoding_format %q: want float or base64", req.EncodingFormat))
		return
	}
	if req.Dimensions != nil {
		writeError(w, invalid("dimensions", "unsupported_parameter", "dimensions is not supported: embeddings have the model's hidden size, %d", s.b.Net.Config.HiddenSize))
		return
	}
	in := &req.Input
	if !in.set || in.count() == 0 {
		writeError(w, invalid("input", "invalid_value", "input is required"))
		return
	}
	inputs, e := s.embedInputs(in)
	if e != nil {
		writeError(w, e)
		return
	}
	limit, vocab := s.b.ContextLength(), s.b.Net.Config.VocabSize
	for i, ids := range inputs {
		if len(ids) == 0 {
			writeError(w, invalid("input", "invalid_value", "input %d is empty", i))
			return
		}
		if len(ids) > limit {
			writeError(w, invalid("input", "context_length_exceeded", "This model's maximum context length is %d tokens. However, input %d has %d tokens.", limit, i, len(ids)))
			return
		}
		for _, id := range ids {
			if id < 0 || id >= vocab {
				writeError(w, invalid("input", "invalid_value", "input %d: token %d is outside the vocabulary of %d", i, id, vocab))
				return
			}
		}
	}
	resp := embeddingList{Object: "list", Model: s.cfg.ModelName}
	for i, ids := range inputs {
		if r.Context().Err() != nil {
			return
		}
		vec, err := s.b.Net.Embedding(ids)
		if err != nil {
			writeError(w, engineError(err, "input"))
			return
		}
		normalize(vec)
		item := embeddingItem{Object: "embedding", Index: i, Embedding: vec}
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for j, v := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
			}
			item.Embedding = base64.StdEncoding.EncodeToString(buf)
		}
		resp.Data = append(resp.Data, item)
		resp.Usage.PromptTokens += len(ids)
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	writeJSON(w, http.StatusOK, resp)
}

// normalize scales v to unit length (a zero vector stays zero).
func normalize(v []float32) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}
