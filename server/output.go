package server

import (
	"strings"

	"github.com/kvserve/kvserve/engine"
)

// choiceOut follows one choice's output: the text, split into content and
// tool calls when the request has tools, and the tokens' logprobs.
type choiceOut struct {
	tools   *toolSetup // nil without tools
	content strings.Builder
	held    string // text that may be (part of) a tool call
	mode    int    // Llama 3 format: 0 undecided, 1 content, 2 a call
	calls   []toolCall
	lps     []engine.Logprob
	pending int // logprobs not yet streamed
	finish  string
}

// push takes a piece of generated text and returns the content that may
// go out now and the tool calls completed by it.
func (c *choiceOut) push(text string) (string, []toolCall) {
	if c.tools == nil {
		c.content.WriteString(text)
		return text, nil
	}
	out, calls := c.splitTools(text, false)
	c.content.WriteString(out)
	c.calls = append(c.calls, calls...)
	return out, calls
}

// flush ends the choice: what was held back becomes content or calls.
func (c *choiceOut) flush() (string, []toolCall) {
	if c.tools == nil {
		return "", nil
	}
	out, calls := c.splitTools("", true)
	c.content.WriteString(out)
	c.calls = append(c.calls, calls...)
	return out, calls
}

// message returns the finished choice as a chat message, and its finish
// reason ("tool_calls" when it called tools and stopped).
func (c *choiceOut) message() (responseMessage, string) {
	m := responseMessage{Role: "assistant"}
	text := c.content.String()
	finish := c.finish
	if len(c.calls) > 0 {
		m.ToolCalls = c.calls
		if finish == "stop" {
			finish = "tool_calls"
		}
		if c.tools.legacy { // functions were asked for: one function_call
			m.ToolCalls, m.FunctionCall = nil, &c.calls[0].Function
			if finish == "tool_calls" {
				finish = "function_call"
			}
		}
		if strings.TrimSpace(text) == "" {
			return m, finish
		}
	}
	m.Content = &text
	return m, finish
}

// takeLogprobs returns the logprobs not yet streamed.
func (c *choiceOut) takeLogprobs() []engine.Logprob {
	lp := c.lps[c.pending:]
	c.pending = len(c.lps)
	return lp
}
