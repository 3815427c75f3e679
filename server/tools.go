package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/kvserve/kvserve/grammar"
)

// This file holds tool calling: tools and tool_choice (and the legacy
// functions and function_call), the tools rendered by the chat template,
// the model's calls parsed out of its text, required and named choices
// enforced by a grammar, and the calls streamed as OpenAI streams them.
//
// Two call formats exist, chosen from the template: the Hermes / Qwen one,
// <tool_call>\n{"name": …, "arguments": {…}}\n</tool_call> (one block per
// call), and Llama 3's, a bare JSON object {"name": …, "parameters": {…}}.
// A template that mentions <tool_call> when given tools, or that does not
// render tools at all, gets the Hermes format; one that writes "parameters"
// gets Llama 3's. A template that does not render tools gets them in a
// system message written here, in the Hermes format.

// toolCall is a call in a response.
type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// toolCallDelta is a piece of a streamed call: the first piece of a call
// has its id, type and name, later ones add to the arguments.
type toolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function toolFunctionDelta `json:"function"`
}

type toolFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// toolDef is a tool of the request.
type toolDef struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
		Strict      *bool           `json:"strict,omitempty"`
	} `json:"function"`
}

// toolFormat is how a model writes calls.
type toolFormat int

const (
	hermesFormat toolFormat = iota // <tool_call>{"name", "arguments"}</tool_call>
	llama3Format                   // {"name", "parameters"}
)

// toolSetup is a request's tools.
type toolSetup struct {
	defs     []toolDef
	raw      json.RawMessage // the tools as the template gets them
	choice   string          // auto, none, required or named
	named    string          // the function, for named
	parallel bool
	format   toolFormat
	legacy   bool // given as functions: answered with function_call, one call
}

// templateTools is what the chat template does with tools, found once by
// rendering a probe.
type templateTools struct {
	renders   bool // the tools variable changes the prompt
	callsSeen bool // an assistant message's tool_calls reach the prompt
	format    toolFormat
}

var templateProbes sync.Map // *engine.Bundle → func() templateTools

const probeName = "kvserve_probe_function"

// toolSupport returns what the template does with tools.
func (s *Server) toolSupport() templateTools {
	f, _ := templateProbes.LoadOrStore(s.b, sync.OnceValue(func() templateTools {
		var tt templateTools
		if s.b.Chat == nil {
			return tt
		}
		user := json.RawMessage(`[{"role":"user","content":"hi"}]`)
		tools := json.RawMessage(`[{"type":"function","function":{"name":"` + probeName + `","description":"d","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}]`)
		plain, err1 := s.b.Chat.RenderVars(nil, true, map[string]any{"messages": user})
		with, err2 := s.b.Chat.RenderVars(nil, true, map[string]any{"messages": user, "tools": tools})
		tt.renders = err1 == nil && err2 == nil && plain != with && strings.Contains(with, probeName)
		if tt.renders && !strings.Contains(with, "<tool_call>") && strings.Contains(with, `"parameters"`) {
			tt.format = llama3Format
		}
		calls := json.RawMessage(`[{"role":"user","content":"hi"},{"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"` + probeName + `","arguments":{"x":"y"}}}]},{"role":"tool","tool_call_id":"call_1","content":"ok"}]`)
		vars := map[string]any{"messages": calls}
		if tt.renders {
			vars["tools"] = tools
		}
		out, err := s.b.Chat.RenderVars(nil, true, vars)
		tt.callsSeen = err == nil && strings.Contains(out, probeName)
		return tt
	}))
	return f.(func() templateTools)()
}

// parseTools reads tools, tool_choice and parallel_tool_calls, or their
// legacy forms functions and function_call.
func (s *Server) parseTools(p *sampling) (*toolSetup, *apiError) {
	has := func(raw json.RawMessage) bool {
		t := string(bytes.TrimSpace(raw))
		return t != "" && t != "null"
	}
	toolsParam, choiceParam := "tools", "tool_choice"
	rawTools, rawChoice := p.Tools, p.ToolChoice
	if has(p.Functions) || has(p.FunctionCall) {
		if has(p.Tools) || has(p.ToolChoice) {
			return nil, invalid("functions", "invalid_value", "functions and function_call are the legacy form of tools and tool_choice; send one form, not both")
		}
		var fns []json.RawMessage
		if has(p.Functions) {
			if err := json.Unmarshal(p.Functions, &fns); err != nil {
				return nil, invalid("functions", "invalid_type", "functions: want a list of function definitions")
			}
		}
		wrapped := make([]json.RawMessage, len(fns))
		for i, f := range fns {
			wrapped[i] = json.RawMessage(`{"type":"function","function":` + string(f) + `}`)
		}
		rawTools, _ = json.Marshal(wrapped)
		toolsParam, choiceParam = "functions", "function_call"
		rawChoice = nil
		if has(p.FunctionCall) {
			var name struct {
				Name string `json:"name"`
			}
			var word string
			switch {
			case json.Unmarshal(p.FunctionCall, &word) == nil:
				rawChoice, _ = json.Marshal(word)
			case json.Unmarshal(p.FunctionCall, &name) == nil && name.Name != "":
				rawChoice, _ = json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": name.Name}})
			default:
				return nil, invalid("function_call", "invalid_type", `function_call: want "none", "auto" or {"name": …}`)
			}
		}
	}
	if !has(rawTools) || string(bytes.TrimSpace(rawTools)) == "[]" {
		if p.ParallelToolCalls != nil {
			return nil, invalid("parallel_tool_calls", "invalid_value", "parallel_tool_calls is only allowed with tools")
		}
		if has(rawChoice) {
			var word string
			if json.Unmarshal(rawChoice, &word) == nil && word == "none" {
				return nil, nil
			}
			return nil, invalid(choiceParam, "invalid_value", "%s needs %s", choiceParam, toolsParam)
		}
		return nil, nil
	}
	ts := &toolSetup{choice: "auto", parallel: true}
	if err := json.Unmarshal(rawTools, &ts.defs); err != nil {
		return nil, invalid(toolsParam, "invalid_type", "%s: want a list of {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}: %v", toolsParam, err)
	}
	names := map[string]bool{}
	for i, d := range ts.defs {
		param := fmt.Sprintf("%s[%d]", toolsParam, i)
		if d.Type != "function" {
			return nil, invalid(param+".type", "invalid_value", "%s.type %q: only \"function\" tools are supported", param, d.Type)
		}
		if !validName(d.Function.Name) {
			return nil, invalid(param+".function.name", "invalid_value", "%s.function.name %q: want 1 to 64 letters, digits, '_' or '-'", param, d.Function.Name)
		}
		if names[d.Function.Name] {
			return nil, invalid(param+".function.name", "invalid_value", "two tools are named %q", d.Function.Name)
		}
		names[d.Function.Name] = true
		if ps := bytes.TrimSpace(d.Function.Parameters); len(ps) > 0 && ps[0] != '{' && string(ps) != "null" {
			return nil, invalid(param+".function.parameters", "invalid_type", "%s.function.parameters: want a JSON Schema object", param)
		}
	}
	ts.raw, _ = json.Marshal(ts.defs)
	if has(rawChoice) {
		var word string
		var named struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(rawChoice, &word) == nil:
			if word != "auto" && word != "none" && word != "required" {
				return nil, invalid(choiceParam, "invalid_value", `%s %q: want "auto", "none", "required" or {"type": "function", "function": {"name": …}}`, choiceParam, word)
			}
			ts.choice = word
		case json.Unmarshal(rawChoice, &named) == nil && named.Function.Name != "":
			if !names[named.Function.Name] {
				return nil, invalid(choiceParam, "invalid_value", "%s names %q, which is not among the tools", choiceParam, named.Function.Name)
			}
			ts.choice, ts.named = "named", named.Function.Name
		default:
			return nil, invalid(choiceParam, "invalid_type", `%s: want "auto", "none", "required" or {"type": "function", "function": {"name": …}}`, choiceParam)
		}
	}
	if p.ParallelToolCalls != nil {
		ts.parallel = *p.ParallelToolCalls
	}
	if toolsParam == "functions" {
		ts.legacy, ts.parallel = true, false
	}
	ts.format = s.toolSupport().format
	return ts, nil
}

// chatOnlyTools rejects the tool fields on /v1/completions, which has no
// messages to carry calls.
func chatOnlyTools(p *sampling) *apiError {
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"tools", len(bytes.TrimSpace(p.Tools)) > 0 && string(bytes.TrimSpace(p.Tools)) != "null"},
		{"tool_choice", len(bytes.TrimSpace(p.ToolChoice)) > 0 && string(bytes.TrimSpace(p.ToolChoice)) != "null"},
		{"parallel_tool_calls", p.ParallelToolCalls != nil},
		{"functions", len(bytes.TrimSpace(p.Functions)) > 0 && string(bytes.TrimSpace(p.Functions)) != "null"},
		{"function_call", len(bytes.TrimSpace(p.FunctionCall)) > 0 && string(bytes.TrimSpace(p.FunctionCall)) != "null"},
	} {
		if f.set {
			return invalid(f.name, "unsupported_parameter", "%s is a parameter of /v1/chat/completions, not of /v1/completions", f.name)
		}
	}
	return nil
}

// validName reports whether a function name is as OpenAI allows.
func validName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, r := range n {
		if !(r == '_' || r == '-' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

// templateMessage is a message as chat templates read it.
type templateMessage struct {
	Role       string         `json:"role"`
	Content    string         `json:"content"`
	Name       string         `json:"name,omitempty"`
	ToolCalls  []templateCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

// templateCall is a call as templates read it: the arguments an object
// (as transformers passes them), not a string.
type templateCall struct {
	ID       string `json:"id,omitempty"`
	Type     string `json:"type"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// renderChat renders the conversation with the chat template and the
// generation prompt, tools included (unless tool_choice is none).
func (s *Server) renderChat(msgs []chatMessage, tools *toolSetup) (string, *apiError) {
	return s.renderChatTools(msgs, tools, true)
}

// renderChatFor renders a conversation without tools.
func (s *Server) renderChatFor(msgs []chatMessage, addGenerationPrompt bool) (string, *apiError) {
	return s.renderChatTools(msgs, nil, addGenerationPrompt)
}

func (s *Server) renderChatTools(msgs []chatMessage, tools *toolSetup, addGenerationPrompt bool) (string, *apiError) {
	if s.b.Chat == nil {
		_, err := s.b.ChatPrompt(nil)
		return "", invalid("messages", "invalid_value", "%v", err)
	}
	support := s.toolSupport()
	withTools := tools != nil && tools.choice != "none"
	out := make([]templateMessage, 0, len(msgs)+1)
	for i, m := range msgs {
		tm := templateMessage{Role: m.Role, Content: string(m.Content), Name: m.Name, ToolCallID: m.ToolCallID}
		if m.Role == "function" { // the legacy form of a tool message
			tm.Role = "tool"
		}
		calls, e := messageCalls(m, i)
		if e != nil {
			return "", e
		}
		if tm.Role == "tool" && !support.callsSeen {
			// A template that knows no tool calls may know no tool role
			// either (Gemma's insists on user/assistant turns): the result
			// goes in a user turn, results of one round in one turn.
			result := "<tool_response>\n" + tm.Content + "\n</tool_response>"
			if n := len(out); n > 0 && out[n-1].Role == "user" && strings.HasPrefix(out[n-1].Content, "<tool_response>") {
				out[n-1].Content += "\n" + result
				continue
			}
			tm = templateMessage{Role: "user", Content: result}
		}
		if len(calls) > 0 && !support.callsSeen {
			// The template drops tool_calls: write them into the content
			// in the format the model is asked to use.
			var b strings.Builder
			b.WriteString(tm.Content)
			for _, c := range calls {
				if b.Len() > 0 {
					b.WriteString("\n")
				}
				b.WriteString(formatCall(hermesFormat, c.Function.Name, c.Function.Arguments))
			}
			tm.Content = b.String()
		} else {
			tm.ToolCalls = calls
		}
		out = append(out, tm)
	}
	vars := map[string]any{}
	if withTools {
		if support.renders {
			vars["tools"] = tools.raw
		} else {
			sys := toolsSystemPrompt(tools.defs)
			if len(out) > 0 && out[0].Role == "system" {
				out[0].Content += "\n\n" + sys
			} else {
				out = append([]templateMessage{{Role: "system", Content: sys}}, out...)
			}
		}
	}
	data, _ := json.Marshal(out)
	vars["messages"] = json.RawMessage(data)
	text, err := s.b.Chat.RenderVars(nil, addGenerationPrompt, vars)
	if err != nil {
		return "", invalid("messages", "invalid_value", "%v", err)
	}
	return text, nil
}

// messageCalls returns a message's tool_calls (or legacy function_call)
// as the template reads them.
func messageCalls(m chatMessage, i int) ([]templateCall, *apiError) {
	has := func(raw json.RawMessage) bool {
		t := string(bytes.TrimSpace(raw))
		return t != "" && t != "null"
	}
	var in []toolCall
	switch {
	case has(m.ToolCalls):
		if err := json.Unmarshal(m.ToolCalls, &in); err != nil {
			return nil, invalid(fmt.Sprintf("messages[%d].tool_calls", i), "invalid_type", "messages[%d].tool_calls: want a list of {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}", i)
		}
	case has(m.FunctionCall):
		var f toolFunction
		if err := json.Unmarshal(m.FunctionCall, &f); err != nil {
			return nil, invalid(fmt.Sprintf("messages[%d].function_call", i), "invalid_type", "messages[%d].function_call: want {\"name\", \"arguments\"}", i)
		}
		in = []toolCall{{Type: "function", Function: f}}
	}
	out := make([]templateCall, len(in))
	for j, c := range in {
		out[j].ID, out[j].Type = c.ID, "function"
		out[j].Function.Name = c.Function.Name
		args := strings.TrimSpace(c.Function.Arguments)
		if json.Valid([]byte(args)) && strings.HasPrefix(args, "{") {
			out[j].Function.Arguments = json.RawMessage(args)
		} else {
			out[j].Function.Arguments, _ = json.Marshal(c.Function.Arguments)
		}
	}
	return out, nil
}

// formatCall writes a call in a format.
func formatCall(f toolFormat, name string, args json.RawMessage) string {
	n, _ := json.Marshal(name)
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	if f == llama3Format {
		return `{"name": ` + string(n) + `, "parameters": ` + string(args) + `}`
	}
	return "<tool_call>\n{\"name\": " + string(n) + ", \"arguments\": " + string(args) + "}\n</tool_call>"
}

// toolsSystemPrompt describes the tools for a template that does not.
func toolsSystemPrompt(defs []toolDef) string {
	var b strings.Builder
	b.WriteString("You can call functions. Their definitions, one JSON Schema a line:\n<tools>\n")
	for _, d := range defs {
		line, _ := json.Marshal(d)
		b.Write(line)
		b.WriteString("\n")
	}
	b.WriteString("</tools>\nTo call one, answer with its name and an arguments object in a tool_call block:\n<tool_call>\n{\"name\": \"the function\", \"arguments\": {…}}\n</tool_call>\nResults come back in tool_response blocks.")
	return b.String()
}

// constrainTools makes tool_choice required or named a grammar on the
// output: one call (or, with parallel_tool_calls, up to eight) of the
// allowed functions with arguments of their schemas.
func (s *Server) constrainTools(g *generation) *apiError {
	ts := g.tools
	if ts == nil || (ts.choice != "required" && ts.choice != "named") {
		return nil
	}
	if g.structured {
		return invalid("response_format", "unsupported_parameter", "response_format cannot be combined with tool_choice %s: the output is the tool call", ts.choice)
	}
	if g.job.IgnoreEOS {
		return invalid("ignore_eos", "unsupported_parameter", "ignore_eos cannot be combined with tool_choice %s", ts.choice)
	}
	argKey := "arguments"
	if ts.format == llama3Format {
		argKey = "parameters"
	}
	var calls []*grammar.Grammar
	for i, d := range ts.defs {
		if ts.choice == "named" && d.Function.Name != ts.named {
			continue
		}
		params := grammar.Object(nil, nil)
		if ps := bytes.TrimSpace(d.Function.Parameters); len(ps) > 0 && string(ps) != "null" {
			var err error
			if params, err = grammar.FromSchema(ps); err != nil {
				return invalid(fmt.Sprintf("tools[%d].function.parameters", i), "invalid_value", "tools[%d].function.parameters (needed for tool_choice %s): %v", i, ts.choice, err)
			}
		}
		calls = append(calls, grammar.Object([]string{"name", argKey}, []*grammar.Grammar{grammar.Const(d.Function.Name), params}))
	}
	call := grammar.OneOf(calls...)
	var gr *grammar.Grammar
	if ts.format == llama3Format {
		gr = call
	} else {
		most := 1
		if ts.parallel {
			most = 8
		}
		gr = grammar.Repeat(grammar.Wrap("<tool_call>\n", call, "\n</tool_call>"), "\n", 1, most)
	}
	g.job.Grammar = boundGrammar{gr, s.vocab()}
	return nil
}

// newCallID returns a tool call id.
func newCallID() string {
	var b [12]byte
	rand.Read(b[:])
	return "call_" + hex.EncodeToString(b[:])
}

// parseCall reads a call's JSON: {"name", "arguments" or "parameters"}
// naming one of the tools.
func (ts *toolSetup) parseCall(text string) (toolCall, bool) {
	var c struct {
		Name       string          `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
	}
	if json.Unmarshal([]byte(strings.TrimSpace(text)), &c) != nil {
		return toolCall{}, false
	}
	known := false
	for _, d := range ts.defs {
		known = known || d.Function.Name == c.Name
	}
	if !known {
		return toolCall{}, false
	}
	args := c.Arguments
	if len(args) == 0 {
		args = c.Parameters
	}
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	if args[0] == '"' { // arguments sent as a JSON string
		var s string
		json.Unmarshal(args, &s)
		args = json.RawMessage(s)
	}
	var buf bytes.Buffer
	if json.Compact(&buf, args) != nil {
		return toolCall{}, false
	}
	return toolCall{ID: newCallID(), Type: "function", Function: toolFunction{Name: c.Name, Arguments: buf.String()}}, true
}

const (
	openTag  = "<tool_call>"
	closeTag = "</tool_call>"
)

// splitTools takes generated text (final: no more comes) and returns the
// content that may go out now and the calls completed, holding back what
// may still turn out to be a call.
func (c *choiceOut) splitTools(text string, final bool) (string, []toolCall) {
	ts := c.tools
	if ts.choice == "none" {
		return text, nil
	}
	buf := c.held + text
	c.held = ""
	if ts.format == llama3Format {
		if c.mode == 0 {
			t := strings.TrimLeft(buf, " \n\t")
			t = strings.TrimPrefix(t, "<|python_tag|>")
			switch {
			case t == "" && !final:
				c.held = buf
				return "", nil
			case strings.HasPrefix(t, "{"):
				c.mode = 2
			default:
				c.mode = 1
			}
		}
		if c.mode == 1 {
			return buf, nil
		}
		if !final {
			c.held = buf
			return "", nil
		}
		t := strings.TrimPrefix(strings.TrimSpace(buf), "<|python_tag|>")
		var calls []toolCall
		for _, part := range strings.Split(t, ";") {
			call, ok := ts.parseCall(part)
			if !ok {
				return buf, nil
			}
			calls = append(calls, call)
		}
		return "", calls
	}
	var content strings.Builder
	var calls []toolCall
	for {
		i := strings.Index(buf, openTag)
		if i < 0 {
			if final {
				if c.calls == nil && calls == nil || strings.TrimSpace(buf) != "" {
					content.WriteString(buf)
				}
				break
			}
			k := heldBack(buf)
			content.WriteString(buf[:len(buf)-k])
			c.held = buf[len(buf)-k:]
			break
		}
		if strings.TrimSpace(buf[:i]) != "" || (len(c.calls) == 0 && len(calls) == 0 && content.Len() > 0) {
			content.WriteString(buf[:i])
		}
		rest := buf[i+len(openTag):]
		j := strings.Index(rest, closeTag)
		if j < 0 {
			if final { // cut off: a call if its JSON is whole
				if call, ok := ts.parseCall(rest); ok {
					calls = append(calls, call)
				} else {
					content.WriteString(buf[i:])
				}
				break
			}
			c.held = buf[i:]
			break
		}
		if call, ok := ts.parseCall(rest[:j]); ok {
			calls = append(calls, call)
		} else {
			content.WriteString(buf[i : i+len(openTag)+j+len(closeTag)])
		}
		buf = rest[j+len(closeTag):]
	}
	return content.String(), calls
}

// heldBack returns how many bytes at the end of buf to hold: white space
// (which may precede a call) and a beginning of the opening tag.
func heldBack(buf string) int {
	k := 0
	for n := min(len(openTag)-1, len(buf)); n > 0; n-- {
		if strings.HasSuffix(buf, openTag[:n]) {
			k = n
			break
		}
	}
	rest := buf[:len(buf)-k]
	trimmed := strings.TrimRight(rest, " \n\t\r")
	return len(buf) - len(trimmed)
}

// sendCalls streams calls as OpenAI does: for each, a delta with its
// index, id, type and name and empty arguments, then one with the
// arguments. first is the index of the first call.
func (s *Server) sendCalls(out *sse, ts *toolSetup, calls []toolCall, first int, mk func([]toolCallDelta, *toolFunctionDelta) any) {
	if ts != nil && ts.legacy {
		if first == 0 && len(calls) > 0 { // one function_call: name, then arguments
			c := calls[0]
			out.send(mk(nil, &toolFunctionDelta{Name: c.Function.Name}))
			out.send(mk(nil, &toolFunctionDelta{Arguments: c.Function.Arguments}))
		}
		return
	}
	for i, c := range calls {
		idx := first + i
		out.send(mk([]toolCallDelta{{Index: idx, ID: c.ID, Type: "function", Function: toolFunctionDelta{Name: c.Function.Name}}}, nil))
		out.send(mk([]toolCallDelta{{Index: idx, Function: toolFunctionDelta{Arguments: c.Function.Arguments}}}, nil))
	}
}
