package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/kvserve/kvserve/engine"
)

// What a model lacks, answered as 400s that say what to do: a base model
// has no chat template (chat needs one; raw text does not), and a folder of
// weights and config only has no tokenizer (text endpoints need one).

// chatPromptError turns an error of rendering the chat template into the
// API's answer.
func (s *Server) chatPromptError(err error) *apiError {
	switch {
	case errors.Is(err, engine.ErrNoTokenizer):
		return s.noTokenizer("/v1/chat/completions", "messages")
	case errors.Is(err, engine.ErrNoChatTemplate):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: strp("messages"), Code: strp("chat_template_missing"),
			Message: fmt.Sprintf("The model `%s` has no chat template (it is a base model), so /v1/chat/completions cannot turn messages into a prompt. "+
				"Send raw text to /v1/completions, or start the server with --chat-template FILE (a Jinja chat template).", s.cfg.ModelName)}
	}
	return invalid("messages", "invalid_value", "%v", err)
}

// needTokenizer returns the 400 of a request to endpoint that needs text
// (param: the request field) when the model has no tokenizer, else nil.
func (s *Server) needTokenizer(endpoint, param string) *apiError {
	if s.b.Tokenizer != nil {
		return nil
	}
	return s.noTokenizer(endpoint, param)
}

func (s *Server) noTokenizer(endpoint, param string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: strp(param), Code: strp("tokenizer_missing"),
		Message: fmt.Sprintf("The model `%s` has no tokenizer.json (its folder holds weights and config only), so %s cannot turn text into tokens or back. "+
			"Add the model's tokenizer.json to the folder, or run it on token ids: kvserve run --prompt-ids 1,2,3 --json.", s.cfg.ModelName, endpoint)}
}
