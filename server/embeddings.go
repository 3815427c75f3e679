package server

import (
	"encoding/base64"
	"encoding/binary"
	"io"
	"math"
	"net/http"

	"github.com/kvserve/kvserve/engine"
)

// embeddings answers POST /v1/embeddings: each input's embedding is the
// mean of the model's final-normed hidden states over its tokens, scaled
// to unit length as OpenAI's are. The request goes through the scheduler
// (engine.Scheduler.SubmitEmbed): queued with the completions (429 when
// the queue is full), computed in chunks batched with their steps, ended
// when the client goes away. Config.EmbedMaxInputs and EmbedMaxTokens
// bound its size.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if e := s.decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if s.servesEncoder(req.Model) {
		if e := checkEmbeddingFormat(&req); e != nil {
			writeError(w, e)
			return
		}
		s.encoderEmbeddings(w, r, &req)
		return
	}
	if e := s.checkModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	if e := checkEmbeddingFormat(&req); e != nil {
		writeError(w, e)
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
	if len(in.Texts) > 0 {
		if e := s.needTokenizer("/v1/embeddings with text input", "input"); e != nil {
			writeError(w, e)
			return
		}
	}
	inputs, e := s.embedInputs(in)
	if e != nil {
		writeError(w, e)
		return
	}
	st, err := s.sched.SubmitEmbed(r.Context(), engine.EmbedJob{Inputs: inputs, Salt: tenantSalt(r, nil)})
	if err != nil {
		writeError(w, engineError(err, "input"))
		return
	}
	resp := embeddingList{Object: "list", Model: s.cfg.ModelName, Data: make([]embeddingItem, len(inputs))}
	for {
		ev, err := st.Recv(r.Context())
		if err == io.EOF {
			break
		}
		if err != nil { // the client went away; the engine drops the request
			return
		}
		if ev.Err != nil {
			if !clientGone(r.Context(), ev.Err) {
				writeError(w, engineError(ev.Err, "input"))
			}
			return
		}
		vec := ev.Embedding
		normalize(vec)
		item := embeddingItem{Object: "embedding", Index: ev.Choice, Embedding: vec}
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for j, v := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
			}
			item.Embedding = base64.StdEncoding.EncodeToString(buf)
		}
		resp.Data[ev.Choice] = item
	}
	resp.Usage.PromptTokens = st.Usage().PromptTokens
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

// checkEmbeddingFormat checks encoding_format.
func checkEmbeddingFormat(req *embeddingRequest) *apiError {
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return invalid("encoding_format", "invalid_value", "encoding_format %q: want float or base64", req.EncodingFormat)
	}
	return nil
}
