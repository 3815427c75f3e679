package server

import (
	"net/http"
)

// tokenizeRequest is the body of POST /tokenize, in vLLM's form (prompt,
// or messages rendered by the chat template) or llama-server's (content).
type tokenizeRequest struct {
	Model               string        `json:"model"`
	Prompt              *string       `json:"prompt"`
	Content             *string       `json:"content"`
	Messages            []chatMessage `json:"messages"`
	AddGenerationPrompt *bool         `json:"add_generation_prompt"`
	ReturnTokenStrs     bool          `json:"return_token_strs"`
	WithPieces          bool          `json:"with_pieces"`
}

// tokenizeResponse lists the tokens; token_strs with return_token_strs or
// with_pieces.
type tokenizeResponse struct {
	Tokens      []int    `json:"tokens"`
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	TokenStrs   []string `json:"token_strs,omitempty"`
}

// tokenize answers POST /tokenize: the token ids of a text, as the
// completions endpoint encodes it, or of a conversation, as chat renders
// it (with the generation prompt unless add_generation_prompt is false).
func (s *Server) tokenize(w http.ResponseWriter, r *http.Request) {
	var req tokenizeRequest
	if e := s.decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := s.checkModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	var ids []int
	switch {
	case req.Messages != nil:
		if req.Prompt != nil || req.Content != nil {
			writeError(w, invalid("messages", "invalid_value", "give messages or prompt, not both"))
			return
		}
		if len(req.Messages) == 0 {
			writeError(w, invalid("messages", "invalid_value", "messages must be a non-empty list"))
			return
		}
		text, e := s.renderChatFor(req.Messages, req.AddGenerationPrompt == nil || *req.AddGenerationPrompt)
		if e != nil {
			writeError(w, e)
			return
		}
		ids = s.b.Tokenizer.Encode(text)
	case req.Prompt != nil:
		ids = s.b.Tokenizer.Encode(*req.Prompt)
	case req.Content != nil:
		ids = s.b.Tokenizer.Encode(*req.Content)
	default:
		writeError(w, invalid("prompt", "invalid_value", "give prompt (or content) as text, or messages"))
		return
	}
	resp := tokenizeResponse{Tokens: ids, Count: len(ids), MaxModelLen: s.b.ContextLength()}
	if req.ReturnTokenStrs || req.WithPieces {
		resp.TokenStrs = make([]string, len(ids))
		for i, id := range ids {
			resp.TokenStrs[i], _ = s.tokenText(id)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// detokenizeRequest is the body of POST /detokenize.
type detokenizeRequest struct {
	Model  string `json:"model"`
	Tokens []int  `json:"tokens"`
}

// detokenize answers POST /detokenize: the text of token ids, as prompt
// (vLLM) and content (llama-server).
func (s *Server) detokenize(w http.ResponseWriter, r *http.Request) {
	var req detokenizeRequest
	if e := s.decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := s.checkModel(req.Model); e != nil {
		writeError(w, e)
		return
	}
	if req.Tokens == nil {
		writeError(w, invalid("tokens", "invalid_value", "tokens is required: a list of token ids"))
		return
	}
	vocab := s.b.Net.Config.VocabSize
	for i, id := range req.Tokens {
		if id < 0 || id >= vocab {
			writeError(w, invalid("tokens", "invalid_value", "tokens[%d] = %d is outside the vocabulary of %d", i, id, vocab))
			return
		}
	}
	text := s.b.Tokenizer.Decode(req.Tokens)
	writeJSON(w, http.StatusOK, map[string]string{"prompt": text, "content": text})
}
