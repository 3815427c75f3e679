package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/grammar"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

const weatherTools = `[{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":24},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city","unit"],"additionalProperties":false}}},
{"type":"function","function":{"name":"add","description":"Add two integers","parameters":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"],"additionalProperties":false}}}]`

type toolResponse struct {
	Choices []struct {
		Message struct {
			Role      string     `json:"role"`
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
}

// checkCalls checks that calls name the tools and carry arguments that
// validate against their schemas.
func checkCalls(t *testing.T, calls []toolCall, names ...string) {
	t.Helper()
	var tools []toolDef
	json.Unmarshal([]byte(weatherTools), &tools)
	if len(calls) == 0 {
		t.Fatal("no tool calls")
	}
	for _, c := range calls {
		if !strings.HasPrefix(c.ID, "call_") || c.Type != "function" {
			t.Errorf("call %+v: bad id or type", c)
		}
		ok := false
		for _, n := range names {
			ok = ok || c.Function.Name == n
		}
		if !ok {
			t.Errorf("call to %q, want one of %q", c.Function.Name, names)
		}
		for _, d := range tools {
			if d.Function.Name != c.Function.Name {
				continue
			}
			var schema, args any
			json.Unmarshal(d.Function.Parameters, &schema)
			if err := json.Unmarshal([]byte(c.Function.Arguments), &args); err != nil {
				t.Errorf("arguments %q do not parse: %v", c.Function.Arguments, err)
				continue
			}
			if err := grammar.Validate(schema, args); err != nil {
				t.Errorf("arguments %s: %v", c.Function.Arguments, err)
			}
		}
	}
}

// TestToolCalls checks tool_choice required and named (enforced by the
// grammar), auto and none, the legacy functions form, the tool result
// sent back, and streamed tool-call deltas.
func TestToolCalls(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 4})
	msgs := `[{"role":"user","content":"What is the weather in Paris?"}]`
	ask := func(extra string) toolResponse {
		t.Helper()
		code, data := ts.post(t, "/v1/chat/completions", `{"messages":`+msgs+`,"tools":`+weatherTools+`,"max_tokens":200,"temperature":0`+extra+`}`)
		if code != 200 {
			t.Fatalf("%s: %d %s", extra, code, data)
		}
		var r toolResponse
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := ask(`,"tool_choice":"required","parallel_tool_calls":false`)
	if r.Choices[0].FinishReason != "tool_calls" || r.Choices[0].Message.Content != nil || len(r.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("required: %+v", r.Choices[0])
	}
	checkCalls(t, r.Choices[0].Message.ToolCalls, "get_weather", "add")
	r = ask(`,"tool_choice":{"type":"function","function":{"name":"add"}},"seed":3,"temperature":0.8`)
	checkCalls(t, r.Choices[0].Message.ToolCalls, "add")
	r = ask(`,"tool_choice":"required","temperature":1,"seed":5`) // parallel allowed
	checkCalls(t, r.Choices[0].Message.ToolCalls, "get_weather", "add")
	r = ask(`,"tool_choice":"none"`)
	if len(r.Choices[0].Message.ToolCalls) != 0 || r.Choices[0].Message.Content == nil {
		t.Errorf("none: %+v", r.Choices[0])
	}
	r = ask(`,"tool_choice":"auto"`) // tinychat may or may not call: either shape is whole
	if m := r.Choices[0].Message; m.Content == nil && len(m.ToolCalls) == 0 {
		t.Errorf("auto: neither content nor calls: %+v", r.Choices[0])
	}

	// Legacy functions / function_call map onto tools.
	var defs []toolDef
	json.Unmarshal([]byte(weatherTools), &defs)
	fns, _ := json.Marshal([]any{defs[0].Function, defs[1].Function})
	code, data := ts.post(t, "/v1/chat/completions", `{"messages":`+msgs+`,"functions":`+string(fns)+`,"function_call":{"name":"get_weather"},"max_tokens":200,"temperature":0}`)
	if code != 200 {
		t.Fatalf("functions: %d %s", code, data)
	}
	var legacy struct {
		Choices []struct {
			Message struct {
				FunctionCall *toolFunction `json:"function_call"`
				ToolCalls    []toolCall    `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	json.Unmarshal(data, &legacy)
	lm := legacy.Choices[0]
	if lm.Message.FunctionCall == nil || lm.Message.ToolCalls != nil || lm.FinishReason != "function_call" {
		t.Fatalf("functions: %s", data)
	}
	checkCalls(t, []toolCall{{ID: "call_legacy", Type: "function", Function: *lm.Message.FunctionCall}}, "get_weather")
	r = ask(`,"tool_choice":"required","parallel_tool_calls":false`)

	// The call and its result go back; the template sees both.
	call := r.Choices[0].Message.ToolCalls[0]
	callJSON, _ := json.Marshal([]toolCall{call})
	back := `[{"role":"user","content":"What is the weather in Paris?"},{"role":"assistant","content":null,"tool_calls":` + string(callJSON) + `},{"role":"tool","tool_call_id":"` + call.ID + `","content":"{\"temp\": 21}"}]`
	code, data = ts.post(t, "/tokenize", `{"messages":`+back+`}`)
	if code != 200 {
		t.Fatalf("tokenize: %d %s", code, data)
	}
	var tok tokenizeResponse
	json.Unmarshal(data, &tok)
	rendered := ts.b.Tokenizer.Decode(tok.Tokens)
	if !strings.Contains(rendered, call.Function.Name) || !strings.Contains(rendered, call.Function.Arguments) || !strings.Contains(rendered, `{"temp": 21}`) {
		t.Errorf("the conversation sent back lost the call or its result: %q", rendered)
	}
	code, data = ts.post(t, "/v1/chat/completions", `{"messages":`+back+`,"tools":`+weatherTools+`,"max_tokens":16,"temperature":0}`)
	if code != 200 {
		t.Fatalf("tool result: %d %s", code, data)
	}

	// Streamed: deltas as OpenAI sends them assemble into the same calls.
	body := `{"messages":` + msgs + `,"tools":` + weatherTools + `,"max_tokens":200,"temperature":0,"tool_choice":"required","stream":true}`
	whole := ask(`,"tool_choice":"required"`)
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var calls []toolCall
	finish := ""
	for _, ev := range events(t, resp.Body) {
		if ev == "[DONE]" {
			break
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content   *string         `json:"content"`
					ToolCalls []toolCallDelta `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatal(err)
		}
		ch := c.Choices[0]
		if ch.Delta.Content != nil && *ch.Delta.Content != "" {
			t.Errorf("content %q streamed under tool_choice required", *ch.Delta.Content)
		}
		for _, d := range ch.Delta.ToolCalls {
			if d.Index == len(calls) {
				if d.ID == "" || d.Type != "function" || d.Function.Name == "" {
					t.Errorf("first delta of call %d lacks id, type or name: %+v", d.Index, d)
				}
				calls = append(calls, toolCall{ID: d.ID, Type: d.Type, Function: toolFunction{Name: d.Function.Name}})
			}
			if d.Index >= len(calls) {
				t.Fatalf("delta for call %d before its first delta", d.Index)
			}
			calls[d.Index].Function.Arguments += d.Function.Arguments
		}
		if ch.FinishReason != nil {
			finish = *ch.FinishReason
		}
	}
	if finish != "tool_calls" {
		t.Errorf("streamed finish %q", finish)
	}
	want := whole.Choices[0].Message.ToolCalls
	if len(calls) != len(want) {
		t.Fatalf("streamed %d calls, whole %d", len(calls), len(want))
	}
	for i := range calls {
		if calls[i].Function != want[i].Function {
			t.Errorf("call %d: streamed %+v, whole %+v", i, calls[i].Function, want[i].Function)
		}
	}
}

// TestToolTextParsing checks the parsers on text a model writes.
func TestToolTextParsing(t *testing.T) {
	var defs []toolDef
	json.Unmarshal([]byte(weatherTools), &defs)
	for _, tc := range []struct {
		format  toolFormat
		pieces  []string
		content string
		calls   []string // name + arguments
	}{
		{hermesFormat, []string{"<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"}, "", []string{`add{"a":1,"b":2}`}},
		{hermesFormat, []string{"Sure.", " <tool", "_call>\n{\"name\": \"add\", ", "\"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_", "call>\n<tool_call>{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\",\\\"unit\\\":\\\"celsius\\\"}\"}</tool_call>"},
			"Sure.", []string{`add{"a":1,"b":2}`, `get_weather{"city":"Oslo","unit":"celsius"}`}},
		{hermesFormat, []string{"just text <tool", " here"}, "just text <tool here", nil},
		{hermesFormat, []string{"<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>"}, "<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>", nil},
		{hermesFormat, []string{"<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}"}, "", []string{`add{"a":1,"b":2}`}},
		{llama3Format, []string{" {\"name\": \"add\", ", "\"parameters\": {\"a\": 5, \"b\": 6}}"}, "", []string{`add{"a":5,"b":6}`}},
		{llama3Format, []string{"The answer is {1}"}, "The answer is {1}", nil},
		{llama3Format, []string{"{not json"}, "{not json", nil},
	} {
		c := &choiceOut{tools: &toolSetup{defs: defs, choice: "auto", format: tc.format}}
		var content strings.Builder
		var calls []string
		for _, p := range tc.pieces {
			text, cs := c.splitTools(p, false)
			content.WriteString(text)
			for _, x := range cs {
				calls = append(calls, x.Function.Name+x.Function.Arguments)
			}
			c.calls = append(c.calls, cs...)
		}
		text, cs := c.splitTools("", true)
		content.WriteString(text)
		for _, x := range cs {
			calls = append(calls, x.Function.Name+x.Function.Arguments)
		}
		if strings.TrimSpace(content.String()) != tc.content || fmt.Sprint(calls) != fmt.Sprint(tc.calls) {
			t.Errorf("%q: content %q calls %q, want %q %q", tc.pieces, content.String(), calls, tc.content, tc.calls)
		}
	}
}

// TestUnsupportedCombinations checks that what the server cannot do is a
// 400 naming the parameter.
func TestUnsupportedCombinations(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 2})
	m := `"messages":[{"role":"user","content":"x"}]`
	rf := `"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"a":{"type":"string","pattern":"^x"}}}}}`
	for _, tc := range []struct {
		path, body, param, contains string
	}{
		{"/v1/chat/completions", `{` + m + `,` + rf + `}`, "response_format.json_schema.schema", "pattern"},
		{"/v1/chat/completions", `{` + m + `,"response_format":{"type":"xml"}}`, "response_format.type", "xml"},
		{"/v1/chat/completions", `{` + m + `,"response_format":{"type":"json_schema"}}`, "response_format.json_schema.schema", ""},
		{"/v1/chat/completions", `{` + m + `,"response_format":{"type":"json_object"},"ignore_eos":true}`, "ignore_eos", ""},
		{"/v1/chat/completions", `{` + m + `,"tools":` + weatherTools + `,"tool_choice":"required","response_format":{"type":"json_object"}}`, "response_format", "tool_choice"},
		{"/v1/chat/completions", `{` + m + `,"tool_choice":"required"}`, "tool_choice", "tools"},
		{"/v1/chat/completions", `{` + m + `,"tools":` + weatherTools + `,"tool_choice":"sometimes"}`, "tool_choice", "sometimes"},
		{"/v1/chat/completions", `{` + m + `,"tools":` + weatherTools + `,"tool_choice":{"type":"function","function":{"name":"nope"}}}`, "tool_choice", "nope"},
		{"/v1/chat/completions", `{` + m + `,"tools":[{"type":"retrieval"}]}`, "tools[0].type", "retrieval"},
		{"/v1/chat/completions", `{` + m + `,"tools":[{"type":"function","function":{"name":"a b"}}]}`, "tools[0].function.name", ""},
		{"/v1/chat/completions", `{` + m + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"integer","minimum":0}}}}}],"tool_choice":"required"}`, "tools[0].function.parameters", "minimum"},
		{"/v1/chat/completions", `{` + m + `,"functions":[{"name":"f"}],"tools":` + weatherTools + `}`, "functions", ""},
		{"/v1/chat/completions", `{` + m + `,"logprobs":true,"top_logprobs":21}`, "top_logprobs", "20"},
		{"/v1/chat/completions", `{` + m + `,"logprobs":3}`, "logprobs", "boolean"},
		{"/v1/chat/completions", `{` + m + `,"echo":true}`, "echo", ""},
		{"/v1/completions", `{"prompt":"x","logprobs":true}`, "logprobs", "integer"},
		{"/v1/completions", `{"prompt":"x","logprobs":21}`, "logprobs", ""},
		{"/v1/completions", `{"prompt":"x","top_logprobs":2}`, "top_logprobs", ""},
		{"/v1/chat/completions", `{` + m + `,"presence_penalty":3}`, "presence_penalty", ""},
		{"/v1/chat/completions", `{` + m + `,"frequency_penalty":-2.5}`, "frequency_penalty", ""},
		{"/v1/chat/completions", `{` + m + `,"repetition_penalty":0}`, "repetition_penalty", ""},
		{"/v1/chat/completions", `{` + m + `,"min_p":1.5}`, "min_p", ""},
		{"/v1/chat/completions", `{` + m + `,"logit_bias":{"abc":1}}`, "logit_bias", "abc"},
		{"/v1/chat/completions", `{` + m + `,"logit_bias":{"5":101}}`, "logit_bias", ""},
		{"/v1/chat/completions", `{` + m + `,"logit_bias":{"999999":1}}`, "logit_bias", ""},
		{"/v1/completions", `{"prompt":"x","best_of":2}`, "best_of", ""},
		{"/v1/completions", `{"prompt":"x","suffix":"y"}`, "suffix", ""},
		{"/detokenize", `{"tokens":[1,-1]}`, "tokens", ""},
		{"/v1/completions", `{"prompt":"x","tools":` + weatherTools + `}`, "tools", "chat"},
		{"/v1/completions", `{"prompt":"x","tool_choice":"auto"}`, "tool_choice", "chat"},
		{"/v1/chat/completions", `{` + m + `,"parallel_tool_calls":false}`, "parallel_tool_calls", "tools"},
		{"/tokenize", `{}`, "prompt", ""},
	} {
		code, data := ts.post(t, tc.path, tc.body)
		var e struct {
			Error *apiError `json:"error"`
		}
		json.Unmarshal(data, &e)
		if code != 400 || e.Error == nil || deref(e.Error.Param) != tc.param || !strings.Contains(e.Error.Message, tc.contains) {
			t.Errorf("%s %s: %d %s, want 400 naming %s", tc.path, tc.body[:min(len(tc.body), 90)], code, data, tc.param)
		}
	}
}

// TestTokenize checks /tokenize and /detokenize against the tokenizer.
func TestTokenize(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 2})
	text := "func main() { fmt.Println(\"héllo\") }"
	code, data := ts.post(t, "/tokenize", `{"prompt":`+jsonString(text)+`,"return_token_strs":true}`)
	if code != 200 {
		t.Fatal(code, string(data))
	}
	var r tokenizeResponse
	json.Unmarshal(data, &r)
	want := ts.b.Tokenizer.Encode(text)
	if fmt.Sprint(r.Tokens) != fmt.Sprint(want) || r.Count != len(want) || r.MaxModelLen != ts.b.ContextLength() || len(r.TokenStrs) != len(want) {
		t.Errorf("tokenize: %s, want %v", data, want)
	}
	code, data = ts.post(t, "/detokenize", fmt.Sprintf(`{"tokens":%s}`, strings.ReplaceAll(fmt.Sprint(want), " ", ",")))
	var d map[string]string
	json.Unmarshal(data, &d)
	if code != 200 || d["prompt"] != text || d["content"] != text {
		t.Errorf("detokenize: %d %s", code, data)
	}
	code, data = ts.post(t, "/tokenize", `{"messages":[{"role":"user","content":"hi"}]}`)
	json.Unmarshal(data, &r)
	if code != 200 || fmt.Sprint(r.Tokens) != fmt.Sprint(chatPrompt(t, ts.b, "hi")) {
		t.Errorf("tokenize messages: %d %s", code, data)
	}
	code, data = ts.post(t, "/v1/models", ``)
	_ = code
	resp, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ml modelList
	json.NewDecoder(resp.Body).Decode(&ml)
	if len(ml.Data) != 1 || ml.Data[0].MaxModelLen != 4096 {
		t.Errorf("/v1/models: %+v", ml)
	}
}

// FuzzSplitTools feeds model text, cut into two pieces, to both call
// parsers: nothing may panic, calls name a tool and carry a JSON object,
// and text without the opening tag comes back whole as content.
func FuzzSplitTools(f *testing.F) {
	f.Add("<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>", 5)
	f.Add("text <tool_call>{\"name\":\"add\"}</tool_call> more", 12)
	f.Add(`{"name": "add", "parameters": {"a": 1}}; {"name": "add", "parameters": {}}`, 3)
	var defs []toolDef
	json.Unmarshal([]byte(weatherTools), &defs)
	f.Fuzz(func(t *testing.T, text string, cut int) {
		if cut < 0 || cut > len(text) {
			cut = len(text) / 2
		}
		for _, format := range []toolFormat{hermesFormat, llama3Format} {
			c := &choiceOut{tools: &toolSetup{defs: defs, choice: "auto", format: format}}
			a, calls := c.splitTools(text[:cut], false)
			c.calls = append(c.calls, calls...)
			b, more := c.splitTools(text[cut:], false)
			c.calls = append(c.calls, more...)
			d, last := c.splitTools("", true)
			calls = append(append(calls, more...), last...)
			for _, call := range calls {
				var args map[string]any
				if json.Unmarshal([]byte(call.Function.Arguments), &args) != nil || (call.Function.Name != "add" && call.Function.Name != "get_weather") {
					t.Errorf("%q: call %+v", text, call)
				}
			}
			if format == hermesFormat && !strings.Contains(text, openTag) && a+b+d != text {
				t.Errorf("%q came back as %q", text, a+b+d)
			}
		}
	})
}

// TestToolTemplates renders tools and a call sent back through real
// models' templates and checks the format chosen from each: Qwen 2.5's
// <tool_call> (Hermes), Llama 3.1's JSON, and a template without tools.
func TestToolTemplates(t *testing.T) {
	for _, tc := range []struct {
		file      string
		format    toolFormat
		renders   bool
		callsSeen bool
	}{
		{"qwen2.5-instruct.jinja", hermesFormat, true, true},
		{"llama3.1-instruct.jinja", llama3Format, true, true},
		{"gemma3-it.jinja", hermesFormat, false, false},
	} {
		src, err := os.ReadFile(filepath.Join("..", "tokenizer", "chat", "testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := chat.Parse(string(src), chat.Specials{BOS: "<s>", EOS: "</s>"})
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{b: &engine.Bundle{Name: tc.file, Chat: tmpl}}
		got := s.toolSupport()
		if got.format != tc.format || got.renders != tc.renders || got.callsSeen != tc.callsSeen {
			t.Errorf("%s: %+v, want format %v renders %v calls %v", tc.file, got, tc.format, tc.renders, tc.callsSeen)
		}
		var defs []toolDef
		json.Unmarshal([]byte(weatherTools), &defs)
		raw, _ := json.Marshal(defs)
		ts := &toolSetup{defs: defs, raw: raw, choice: "auto", format: got.format}
		msgs := []chatMessage{
			{Role: "user", Content: "Weather in Oslo?"},
			{Role: "assistant", ToolCalls: json.RawMessage(`[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"unit\":\"celsius\"}"}}]`)},
			{Role: "tool", ToolCallID: "call_1", Name: "get_weather", Content: "-3 degrees"},
		}
		text, e := s.renderChat(msgs, ts)
		if e != nil {
			t.Fatalf("%s: %v", tc.file, e)
		}
		for _, want := range []string{"Current weather in a city", "Oslo", "-3 degrees", "celsius"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: the prompt lacks %q:\n%s", tc.file, want, text)
			}
		}
	}
}
