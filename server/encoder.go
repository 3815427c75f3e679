package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
)

// Encoder is a sentence encoder served on /v1/embeddings next to the
// model, under Config.EncoderName (kvserve serve --embed-model; package
// semcache/embed's BERT is one).
type Encoder interface {
	// Embed returns one vector per text.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Tokens returns how many tokens the encoder reads of text.
	Tokens(text string) int
	// MaxLen returns the most tokens it reads of one text.
	MaxLen() int
}

// servesEncoder reports whether model names the encoder.
func (s *Server) servesEncoder(model string) bool {
	return s.cfg.Encoder != nil && model != "" && model == s.cfg.EncoderName
}

// encoderCard describes the encoder in /v1/models.
func (s *Server) encoderCard() modelCard {
	return modelCard{ID: s.cfg.EncoderName, Object: "model", Created: s.created, OwnedBy: "kvserve", MaxModelLen: s.cfg.Encoder.MaxLen()}
}

// encoderEmbeddings answers an embeddings request for the encoder: each
// text's vector as the encoder pools it (unit length), in the request's
// goroutine, not through the model's scheduler. Inputs must be texts;
// each is truncated to the encoder's MaxLen tokens.
func (s *Server) encoderEmbeddings(w http.ResponseWriter, r *http.Request, req *embeddingRequest) {
	in := &req.Input
	switch {
	case req.Dimensions != nil:
		writeError(w, invalid("dimensions", "unsupported_parameter", "dimensions is not supported: the encoder `%s` gives vectors of its own size", s.cfg.EncoderName))
		return
	case !in.set || in.count() == 0:
		writeError(w, invalid("input", "invalid_value", "input is required"))
		return
	case len(in.IDs) > 0:
		writeError(w, invalid("input", "invalid_value", "the encoder `%s` takes text: send input as a string or a list of strings, not token ids", s.cfg.EncoderName))
		return
	case len(in.Texts) > s.cfg.EmbedMaxInputs:
		writeError(w, invalid("input", "too_many_inputs", "%d inputs in one request; at most %d (kvserve serve --embed-max-inputs)", len(in.Texts), s.cfg.EmbedMaxInputs))
		return
	}
	vecs, err := s.cfg.Encoder.Embed(r.Context(), in.Texts)
	if err != nil {
		if !clientGone(r.Context(), err) {
			writeError(w, &apiError{Status: http.StatusInternalServerError, Message: "the encoder failed: " + err.Error(), Type: "server_error"})
		}
		return
	}
	resp := embeddingList{Object: "list", Model: s.cfg.EncoderName, Data: make([]embeddingItem, len(vecs))}
	for i, vec := range vecs {
		normalize(vec)
		item := embeddingItem{Object: "embedding", Index: i, Embedding: vec}
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for j, v := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
			}
			item.Embedding = base64.StdEncoding.EncodeToString(buf)
		}
		resp.Data[i] = item
		resp.Usage.PromptTokens += s.cfg.Encoder.Tokens(in.Texts[i])
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	writeJSON(w, http.StatusOK, resp)
}
