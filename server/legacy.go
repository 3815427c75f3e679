package server

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Checks of chat requests that ask for what this server does not do, so
// that they get a clear 400 instead of being answered as if the field
// were not there: roles the template does not know, and content parts
// other than text. (Tools, legacy functions and the tool and function
// roles are served: tools.go.)

// chatExtras is what checkChatExtras reads of a chat request's body.
type chatExtras struct {
	Messages []struct {
		Role string `json:"role"`
	} `json:"messages"`
}

// chatRoles are the roles a message may have.
var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// checkChatExtras refuses unknown roles in a chat request body that
// decoded.
func checkChatExtras(data []byte) *apiError {
	var x chatExtras
	if json.Unmarshal(data, &x) != nil {
		return nil // the main decode has reported what was wrong
	}
	for i, m := range x.Messages {
		if m.Role != "" && !chatRoles[m.Role] {
			return invalid(fmt.Sprintf("messages[%d].role", i), "invalid_value", "messages[%d] has role %q; want system, developer, user, assistant, tool or function", i, m.Role)
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
