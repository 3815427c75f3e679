package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Checks of chat requests that ask for what this server does not do, so
// that they get a clear 400 instead of being answered as if the field
// were not there: the legacy functions and function_call (as tools are
// refused), tool_calls and function_call in messages, roles the template
// does not know, and content parts other than text.

// chatExtras is what checkChatExtras reads of a chat request's body.
type chatExtras struct {
	Functions    json.RawMessage `json:"functions"`
	FunctionCall json.RawMessage `json:"function_call"`
	Messages     []struct {
		Role         string          `json:"role"`
		ToolCalls    json.RawMessage `json:"tool_calls"`
		FunctionCall json.RawMessage `json:"function_call"`
	} `json:"messages"`
}

// chatRoles are the roles a message may have.
var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true}

// checkChatExtras refuses legacy function calling, tool calls in messages
// and unknown roles in a chat request body that decoded.
func checkChatExtras(data []byte) *apiError {
	var x chatExtras
	if json.Unmarshal(data, &x) != nil {
		return nil // the main decode has reported what was wrong
	}
	set := func(raw json.RawMessage) bool {
		t := string(bytes.TrimSpace(raw))
		return t != "" && t != "null" && t != "[]"
	}
	switch {
	case set(x.Functions):
		return invalid("functions", "unsupported_parameter", "functions are not supported (tools neither)")
	case set(x.FunctionCall):
		return invalid("function_call", "unsupported_parameter", "function_call is not supported (tools neither)")
	}
	for i, m := range x.Messages {
		switch {
		case set(m.ToolCalls):
			return invalid(fmt.Sprintf("messages[%d].tool_calls", i), "unsupported_parameter", "messages[%d] has tool_calls: tools are not supported", i)
		case set(m.FunctionCall):
			return invalid(fmt.Sprintf("messages[%d].function_call", i), "unsupported_parameter", "messages[%d] has a function_call: functions are not supported", i)
		case m.Role == "tool" || m.Role == "function":
			return invalid(fmt.Sprintf("messages[%d].role", i), "unsupported_parameter", "messages[%d] has role %q: tools are not supported", i, m.Role)
		case m.Role != "" && !chatRoles[m.Role]:
			return invalid(fmt.Sprintf("messages[%d].role", i), "invalid_value", "messages[%d] has role %q; want system, developer, user or assistant", i, m.Role)
		}
	}
	return nil
}

// unsupportedPart is the error of a content part that is not text.
type unsupportedPart struct{ kind string }

// Error names the part's type.
func (e *unsupportedPart) Error() string {
	return fmt.Sprintf("content parts of type %q are not supported: this server serves a text-only model (only \"text\" parts)", e.kind)
}

// partError maps a decoding error caused by a content part to a 400 that
// says so, or returns nil.
func partError(err error) *apiError {
	var up *unsupportedPart
	if errors.As(err, &up) {
		return invalid("messages", "unsupported_content", "%s", up.Error())
	}
	return nil
}
