package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/grammar"
)

// structuredSchemas are schemas a client might send, each asked for over
// HTTP; the answers must parse and validate.
var structuredSchemas = []string{
	`{"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer"},"member":{"type":"boolean"}},"required":["name","age","member"],"additionalProperties":false}`,
	`{"type":"object","properties":{"point":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"],"additionalProperties":false},"label":{"enum":["start","end","middle"]}},"required":["point","label"],"additionalProperties":false}`,
	`{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","maxLength":12},"minItems":1,"maxItems":3},"score":{"type":["number","null"]}},"required":["tags","score"],"additionalProperties":false}`,
	`{"type":"object","properties":{"steps":{"type":"array","items":{"type":"object","properties":{"op":{"type":"string","enum":["add","sub"]},"n":{"type":"integer"}},"required":["op","n"],"additionalProperties":false},"maxItems":4}},"required":["steps"],"additionalProperties":false}`,
	`{"type":"object","properties":{"ok":{"type":"boolean"},"note":{"type":"string","maxLength":16}},"required":["ok"]}`,
}

// TestStructuredOutput asks for each schema (greedy and sampled, whole and
// streamed) and for json_object, and checks that every answer parses and
// validates.
func TestStructuredOutput(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 4})
	for i, schema := range structuredSchemas {
		var sch any
		json.Unmarshal([]byte(schema), &sch)
		for _, mode := range []string{`"temperature":0`, `"temperature":1,"seed":7`} {
			body := fmt.Sprintf(`{"messages":[{"role":"user","content":"Describe it as JSON."}],"max_tokens":300,%s,"response_format":{"type":"json_schema","json_schema":{"name":"s%d","strict":true,"schema":%s}}}`, mode, i, schema)
			code, data := ts.post(t, "/v1/chat/completions", body)
			if code != 200 {
				t.Fatalf("schema %d: %d %s", i, code, data)
			}
			var w whole
			json.Unmarshal(data, &w)
			content := w.Choices[0].Message.Content
			var v any
			if err := json.Unmarshal([]byte(content), &v); err != nil {
				t.Fatalf("schema %d (%s): %q does not parse (finish %s): %v", i, mode, content, w.Choices[0].FinishReason, err)
			}
			if err := grammar.Validate(sch, v); err != nil {
				t.Errorf("schema %d (%s): %s: %v", i, mode, content, err)
			}
			if w.Choices[0].FinishReason != "stop" {
				t.Errorf("schema %d: finish %s", i, w.Choices[0].FinishReason)
			}
			texts, _, _ := streamed(t, ts, "/v1/chat/completions", strings.TrimSuffix(body, "}")+`,"stream":true}`)
			if texts[0] != content {
				t.Errorf("schema %d (%s): streamed %q, whole %q", i, mode, texts[0], content)
			}
		}
	}
	// json_object: any object. A small model may go on adding keys until
	// max_tokens ("length", as OpenAI reports it); what it wrote must then
	// still be the beginning of an object.
	for _, seed := range []int{1, 2, 3} {
		code, data := ts.post(t, "/v1/chat/completions", fmt.Sprintf(`{"messages":[{"role":"user","content":"Give me a JSON object."}],"max_tokens":120,"seed":%d,"response_format":{"type":"json_object"}}`, seed))
		if code != 200 {
			t.Fatalf("%d %s", code, data)
		}
		var w whole
		json.Unmarshal(data, &w)
		text, finish := w.Choices[0].Message.Content, w.Choices[0].FinishReason
		var obj map[string]any
		switch err := json.Unmarshal([]byte(text), &obj); {
		case finish == "stop" && err != nil:
			t.Errorf("json_object: %q is not an object: %v", text, err)
		case finish == "length" && !grammar.JSONObject().NewMatcher(ts.server().vocab()).AcceptBytes([]byte(text)):
			t.Errorf("json_object cut at max_tokens: %q does not begin an object", text)
		}
	}
}

// TestPenaltiesAndSeed checks that the logit processors change what is
// generated as they should, over HTTP, and that a seed repeats a sample.
func TestPenaltiesAndSeed(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 2})
	ask := func(extra string) (string, []int) {
		t.Helper()
		code, data := ts.post(t, "/v1/completions", `{"prompt":"func main() {\n","max_tokens":64,"logprobs":0`+extra+`}`)
		if code != 200 {
			t.Fatalf("%s: %d %s", extra, code, data)
		}
		var r struct{ Choices []legacyChoice }
		json.Unmarshal(data, &r)
		var ids []int
		for _, tok := range r.Choices[0].Logprobs.Tokens {
			if id, ok := ts.b.Tokenizer.TokenID(byteLevel(tok)); ok {
				ids = append(ids, id)
			}
		}
		return r.Choices[0].Text, ids
	}
	greedy, _ := ask(`,"temperature":0`)
	first := ts.b.Tokenizer.Encode(greedy)[0]
	banned, _ := ask(fmt.Sprintf(`,"temperature":0,"logit_bias":{"%d":-100}`, first))
	if strings.HasPrefix(banned, ts.b.Tokenizer.Decode([]int{first})) && ts.b.Tokenizer.Encode(banned)[0] == first {
		t.Errorf("logit_bias -100 on token %d: still first in %q", first, banned)
	}
	forced, _ := ask(`,"temperature":0,"logit_bias":{"42":100}`)
	if want := strings.Repeat(ts.b.Tokenizer.Decode([]int{42}), 64); forced != want {
		t.Errorf("logit_bias +100 on token 42: %q, want %q", forced, want)
	}
	repeats := func(s string) int {
		ids := ts.b.Tokenizer.Encode(s)
		seen, n := map[int]bool{}, 0
		for _, id := range ids {
			if seen[id] {
				n++
			}
			seen[id] = true
		}
		return n
	}
	penalized, _ := ask(`,"temperature":0,"frequency_penalty":2,"presence_penalty":2`)
	if penalized == greedy || repeats(penalized) > repeats(greedy) {
		t.Errorf("penalties did not cut repeats: %d in %q, %d in %q", repeats(penalized), penalized, repeats(greedy), greedy)
	}
	rep, _ := ask(`,"temperature":0,"repetition_penalty":3`)
	if rep == greedy {
		t.Errorf("repetition_penalty 3 changed nothing: %q", rep)
	}
	a, _ := ask(`,"temperature":1.2,"seed":11,"min_p":0.05`)
	b, _ := ask(`,"temperature":1.2,"seed":11,"min_p":0.05`)
	c, _ := ask(`,"temperature":1.2,"seed":12,"min_p":0.05`)
	if a != b {
		t.Errorf("seed 11 twice: %q and %q", a, b)
	}
	if a == c {
		t.Logf("seeds 11 and 12 drew the same text %q", a)
	}
}

// byteLevel writes text as a byte-level BPE vocabulary spells it.
func byteLevel(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		b.WriteRune(byteRune(c))
	}
	return b.String()
}

// byteRune is GPT-2's byte-to-character table.
func byteRune(c byte) rune {
	switch {
	case c >= '!' && c <= '~', c >= 0xA1 && c <= 0xAC, c >= 0xAE:
		return rune(c)
	}
	n := 0
	for x := 0; x < int(c); x++ {
		if !(x >= '!' && x <= '~' || x >= 0xA1 && x <= 0xAC || x >= 0xAE) {
			n++
		}
	}
	return rune(256 + n)
}

// TestStopStringOverHTTP picks a stop string that spans two tokens of the
// greedy answer and checks that the answer ends right before it.
func TestStopStringOverHTTP(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 2})
	body := `{"prompt":"package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(","max_tokens":24,"temperature":0`
	code, data := ts.post(t, "/v1/completions", body+`}`)
	if code != 200 {
		t.Fatal(code, string(data))
	}
	var w whole
	json.Unmarshal(data, &w)
	full := w.Choices[0].Text
	ids := ts.b.Tokenizer.Encode(full)
	var stop string
	at := 0
	for k := 2; k < len(ids); k++ { // the end of token k-1 and the start of token k
		a, b := ts.b.Tokenizer.Decode(ids[k-1:k]), ts.b.Tokenizer.Decode(ids[k:k+1])
		if len(a) >= 1 && len(b) >= 1 {
			stop = a[len(a)-1:] + b[:1]
			at = len(ts.b.Tokenizer.Decode(ids[:k])) - 1
			break
		}
	}
	if stop == "" {
		t.Skipf("no two tokens to span in %q", full)
	}
	at = strings.Index(full, stop)
	code, data = ts.post(t, "/v1/completions", body+`,"stop":[`+jsonString(stop)+`]}`)
	if code != 200 {
		t.Fatal(code, string(data))
	}
	json.Unmarshal(data, &w)
	if w.Choices[0].Text != full[:at] || w.Choices[0].FinishReason != "stop" {
		t.Errorf("stop %q: %q (%s), want %q", stop, w.Choices[0].Text, w.Choices[0].FinishReason, full[:at])
	}
	_ = http.StatusOK
}

// server returns the API server behind the test server.
func (ts *testServer) server() *Server { return ts.Config.Handler.(*Server) }
