package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// This file holds the OpenAI wire format: request bodies as clients send
// them, responses and stream chunks as OpenAI writes them.

// apiError is an error as the OpenAI API returns it, with its HTTP status.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// Error returns the message.
func (e *apiError) Error() string { return e.Message }

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// invalid returns a 400 naming the parameter at fault.
func invalid(param, code, format string, args ...any) *apiError {
	return &apiError{Status: 400, Message: fmt.Sprintf(format, args...), Type: "invalid_request_error", Param: strp(param), Code: strp(code)}
}

// sampling holds the parameters that chat and completions share.
type sampling struct {
	Model               string          `json:"model"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"` // an extension, as in vLLM
	Seed                *int64          `json:"seed"`
	N                   *int            `json:"n"`
	Stop                stopList        `json:"stop"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	IgnoreEOS           bool            `json:"ignore_eos"`     // an extension, as in vLLM
	CacheSalt           *string         `json:"cache_salt"`     // an extension, as in vLLM: the prefix-cache tenant
	KVPress             *string         `json:"kv_press"`       // an extension: the KV-cache press for this request ("none" for none)
	KVPressRatio        *float64        `json:"kv_press_ratio"` // an extension: the fraction of the prompt's KV it removes
	User                string          `json:"user"`
	Logprobs            json.RawMessage `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	LogitBias           map[string]any  `json:"logit_bias"`
	Tools               json.RawMessage `json:"tools"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	Echo                bool            `json:"echo"`
	RepetitionPenalty   *float64        `json:"repetition_penalty"` // an extension, as in vLLM
	MinP                *float64        `json:"min_p"`              // an extension, as in vLLM
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Functions           json.RawMessage `json:"functions"`     // the legacy form of tools
	FunctionCall        json.RawMessage `json:"function_call"` // the legacy form of tool_choice
	BestOf              *int            `json:"best_of"`
	Suffix              *string         `json:"suffix"`

	// Extensions: retrieval at decode (retrieval.go).
	KVRetrieval       *string  `json:"kv_retrieval"`        // the retrieval method of decode steps ("none" for none)
	KVRetrievalBudget *float64 `json:"kv_retrieval_budget"` // tokens read per step: a fraction ≤ 1 or a count
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// stopList is "stop": a string, a list of strings, or null.
type stopList []string

// UnmarshalJSON reads a string, a list of strings or null.
func (s *stopList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return typeError(b, stopList(nil))
	}
	*s = many
	return nil
}

// typeError reports JSON b of the wrong kind for a value like v; the
// decoder adds the field's name.
func typeError(b []byte, v any) error {
	kind := "value"
	switch t := bytes.TrimSpace(b); {
	case len(t) == 0:
	case t[0] == '"':
		kind = "string"
	case t[0] == '[':
		kind = "array"
	case t[0] == '{':
		kind = "object"
	case t[0] == 't' || t[0] == 'f':
		kind = "bool"
	default:
		kind = "number"
	}
	return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeOf(v)}
}

// describe names what a JSON value of Go type t must be, for errors.
func describe(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(stopList(nil)):
		return "a string or a list of strings"
	case reflect.TypeOf(chatContent("")):
		return "a string or a list of content parts"
	case reflect.TypeOf(promptInput{}):
		return "a string, a list of strings, a list of token ids or a list of such lists"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return describe(t.Elem())
	}
	return t.String()
}

// unsupported rejects features this server does not implement, when a
// request asks for them with other than their default values.
func (p *sampling) unsupported() *apiError {
	switch {
	case p.BestOf != nil && *p.BestOf > 1:
		return invalid("best_of", "unsupported_parameter", "best_of is not supported")
	case p.Suffix != nil && *p.Suffix != "":
		return invalid("suffix", "unsupported_parameter", "suffix is not supported")
	}
	return nil
}

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	Messages []chatMessage `json:"messages"`
	// Documents and KVReuse are extensions: retrieved passages whose KV is
	// reused at any position, and the reuse method (documents.go).
	Documents []json.RawMessage `json:"documents"`
	KVReuse   *string           `json:"kv_reuse"`
	sampling
}

type chatMessage struct {
	Role         string          `json:"role"`
	Content      chatContent     `json:"content"`
	Name         string          `json:"name"`
	ToolCalls    json.RawMessage `json:"tool_calls"`    // an assistant's calls, sent back
	ToolCallID   string          `json:"tool_call_id"`  // a tool message's answer to a call
	FunctionCall json.RawMessage `json:"function_call"` // the legacy form of tool_calls
}

// chatContent is a message's content: a string, null, or a list of parts
// of which the text parts are joined.
type chatContent string

// UnmarshalJSON reads a string, null or a list of text parts.
func (c *chatContent) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*c = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = chatContent(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return typeError(b, chatContent(""))
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return &unsupportedPart{p.Type}
		}
		sb.WriteString(p.Text)
	}
	*c = chatContent(sb.String())
	return nil
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Prompt promptInput `json:"prompt"`
	sampling
}

// promptInput is a prompt or embedding input: a string, a list of strings,
// a list of token ids, or a list of lists of token ids.
type promptInput struct {
	Texts []string
	IDs   [][]int
	set   bool
}

// UnmarshalJSON reads any of the four shapes of a prompt.
func (p *promptInput) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	p.set = true
	var s string
	if json.Unmarshal(b, &s) == nil {
		p.Texts = []string{s}
		return nil
	}
	var ss []string
	if json.Unmarshal(b, &ss) == nil {
		p.Texts = ss
		return nil
	}
	var ids []int
	if json.Unmarshal(b, &ids) == nil {
		p.IDs = [][]int{ids}
		return nil
	}
	var idss [][]int
	if json.Unmarshal(b, &idss) == nil {
		p.IDs = idss
		return nil
	}
	return typeError(b, promptInput{})
}

// count returns the number of inputs.
func (p *promptInput) count() int { return len(p.Texts) + len(p.IDs) }

// embeddingRequest is the body of POST /v1/embeddings.
type embeddingRequest struct {
	Model          string      `json:"model"`
	Input          promptInput `json:"input"`
	EncodingFormat string      `json:"encoding_format"`
	Dimensions     *int        `json:"dimensions"`
	User           string      `json:"user"`
}

// usage is the token count of a response.
type usage struct {
	PromptTokens        int           `json:"prompt_tokens"`
	CompletionTokens    int           `json:"completion_tokens"`
	TotalTokens         int           `json:"total_tokens"`
	PromptTokensDetails *promptDetail `json:"prompt_tokens_details,omitempty"`
}

type promptDetail struct {
	CachedTokens int `json:"cached_tokens"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []chatChoice `json:"choices"`
	Usage             usage        `json:"usage"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      responseMessage `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type responseMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"`
	Refusal   *string    `json:"refusal"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
	// FunctionCall answers a request in the legacy functions form.
	FunctionCall *toolFunction `json:"function_call,omitempty"`
}

type chatChunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	SystemFingerprint string            `json:"system_fingerprint"`
	Choices           []chatChunkChoice `json:"choices"`
	Usage             json.RawMessage   `json:"usage,omitempty"`
}

type chatChunkChoice struct {
	Index        int             `json:"index"`
	Delta        chatDelta       `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type chatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []toolCallDelta `json:"tool_calls,omitempty"`
	// FunctionCall is a legacy function call's piece.
	FunctionCall *toolFunctionDelta `json:"function_call,omitempty"`
}

type textCompletion struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint"`
	Choices           []textChoice    `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

type textChoice struct {
	Text         string          `json:"text"`
	Index        int             `json:"index"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type modelList struct {
	Object string      `json:"object"`
	Data   []modelCard `json:"data"`
}

type modelCard struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// MaxModelLen is the context length, as vLLM reports it.
	MaxModelLen int `json:"max_model_len"`
}

// jsonNull is the literal null, for fields OpenAI sends as null.
var jsonNull = json.RawMessage("null")
