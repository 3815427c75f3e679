package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

var (
	tinyOnce sync.Once
	tiny     *engine.Bundle
	tinyErr  error
)

// tinychat returns the bundled model, loaded once for the package.
func tinychat(t *testing.T) *engine.Bundle {
	t.Helper()
	tinyOnce.Do(func() { tiny, tinyErr = engine.Open("", compute.NewPool(0)) })
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tiny
}

// testServer is a real server on a loopback port, with a prefix cache as
// kvserve serve has.
type testServer struct {
	*httptest.Server
	b     *engine.Bundle
	sched *engine.Scheduler
	cache *engine.PrefixCache
}

func start(t *testing.T, cfg engine.SchedulerConfig) *testServer {
	return startBudget(t, cfg, 256<<20)
}

// startBudget starts a server whose KV cache has the given budget.
func startBudget(t *testing.T, cfg engine.SchedulerConfig, budget int64) *testServer {
	return startServer(t, cfg, budget, Config{})
}

// startServer starts a server with the given KV budget and API settings
// (their Metrics are set here, and a silent Logger unless one is given).
func startServer(t *testing.T, cfg engine.SchedulerConfig, budget int64, api Config) *testServer {
	t.Helper()
	b := tinychat(t)
	m := NewMetrics()
	cache := engine.NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: budget})
	cfg.Cache, cfg.Observer = cache, m
	sched := engine.NewScheduler(b, cfg)
	api.Metrics = m
	if api.Logger == nil {
		api.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ts := &testServer{Server: httptest.NewServer(New(b, sched, api)), b: b, sched: sched, cache: cache}
	t.Cleanup(ts.close)
	return ts
}

// idle waits until nothing runs or waits, then drops the prefix cache
// and reports whether the pool is back to empty.
func (ts *testServer) idle() bool {
	return settle(func() bool {
		st := ts.sched.Stats()
		if st.Running != 0 || st.Queued != 0 {
			return false
		}
		ts.cache.Flush()
		used, _ := ts.cache.Pool().Stats()
		return used == 0
	})
}

func (ts *testServer) close() {
	ts.Server.CloseClientConnections()
	ts.Server.Close()
	ts.sched.Close()
}

// post sends a JSON body and returns the status and the body.
func (ts *testServer) post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// events reads a server-sent event stream: the data of each event, in
// order, checking the framing on the way.
func events(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return out
		}
		if err != nil {
			t.Fatalf("stream ended mid-line: %q %v", line, err)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || !strings.HasSuffix(data, "\n") {
			t.Fatalf("line %q is not a data line", line)
		}
		if blank, err := br.ReadString('\n'); blank != "\n" || err != nil {
			t.Fatalf("event %q not followed by a blank line: %q %v", data, blank, err)
		}
		out = append(out, strings.TrimSuffix(data, "\n"))
	}
}

type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

type whole struct {
	Object  string `json:"object"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage usage `json:"usage"`
}

// streamed sends a streaming request and returns each choice's text, its
// finish reason and the usage chunk, checking the chunks' shape.
func streamed(t *testing.T, ts *testServer, path, body string) (texts, finish []string, u *usage) {
	t.Helper()
	resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	evs := events(t, resp.Body)
	if len(evs) == 0 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", evs)
	}
	chatAPI := strings.Contains(path, "chat")
	wantObj := "text_completion"
	if chatAPI {
		wantObj = "chat.completion.chunk"
	}
	roleSeen := map[int]bool{}
	for i, ev := range evs[:len(evs)-1] {
		var c chunk
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, ev)
		}
		if c.Object != wantObj || !strings.HasPrefix(c.ID, "c") || c.Model == "" {
			t.Errorf("event %d: %s", i, ev)
		}
		if c.Usage != nil {
			if len(c.Choices) != 0 || i != len(evs)-2 {
				t.Errorf("usage in event %d of %d, with %d choices", i, len(evs)-1, len(c.Choices))
			}
			u = c.Usage
			continue
		}
		if len(c.Choices) != 1 {
			t.Fatalf("event %d has %d choices: %s", i, len(c.Choices), ev)
		}
		ch := c.Choices[0]
		for len(texts) <= ch.Index {
			texts, finish = append(texts, ""), append(finish, "")
		}
		if finish[ch.Index] != "" {
			t.Errorf("event %d: choice %d goes on after its finish", i, ch.Index)
		}
		if chatAPI {
			if ch.Delta == nil {
				t.Fatalf("event %d has no delta: %s", i, ev)
			}
			if !roleSeen[ch.Index] {
				if ch.Delta.Role == nil || *ch.Delta.Role != "assistant" {
					t.Errorf("first chunk of choice %d carries no role: %s", ch.Index, ev)
				}
				roleSeen[ch.Index] = true
			} else if ch.Delta.Role != nil {
				t.Errorf("role again in event %d", i)
			}
			if ch.Delta.Content != nil {
				texts[ch.Index] += *ch.Delta.Content
			}
			if ch.FinishReason != nil && (ch.Delta.Content != nil || ch.Delta.Role != nil) {
				t.Errorf("finish chunk with a non-empty delta: %s", ev)
			}
		} else if ch.Text != nil {
			texts[ch.Index] += *ch.Text
		}
		if ch.FinishReason != nil {
			finish[ch.Index] = *ch.FinishReason
		}
	}
	return texts, finish, u
}

// reference generates with Bundle.Generate, as `kvserve run` does.
func reference(t *testing.T, b *engine.Bundle, prompt []int, maxTokens int, sp engine.Sampling) (string, string) {
	t.Helper()
	res, err := b.Generate(context.Background(), b.Net.NewCache(), engine.Request{Prompt: prompt, MaxTokens: maxTokens, Sampling: sp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.Tokenizer.Decode(res.Output), string(res.Finish)
}

func chatPrompt(t *testing.T, b *engine.Bundle, text string) []int {
	t.Helper()
	p, err := b.ChatPrompt([]chat.Message{{Role: "user", Content: text}})
	if err != nil {
		t.Fatal(err)
	}
	return b.Tokenizer.Encode(p)
}

// TestSameTextAsGenerate checks that chat and completions, whole and
// streamed, greedy and seeded, give the text Bundle.Generate gives.
func TestSameTextAsGenerate(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{})
	b := ts.b
	const question = "What does fmt.Println do?"
	const code = "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println("
	for _, sp := range []struct {
		name   string
		fields string
		s      engine.Sampling
	}{
		{"greedy", `"temperature":0`, engine.Sampling{}},
		{"seeded", `"temperature":0.9,"top_p":0.9,"top_k":50,"seed":1234`, engine.Sampling{Temperature: 0.9, TopP: 0.9, TopK: 50, Seed: 1234}},
	} {
		q, _ := json.Marshal(question)
		c, _ := json.Marshal(code)
		for _, tc := range []struct {
			path, body string
			prompt     []int
		}{
			{"/v1/chat/completions", fmt.Sprintf(`{"model":"tinychat","messages":[{"role":"user","content":%s}],"max_tokens":20,%s`, q, sp.fields), chatPrompt(t, b, question)},
			{"/v1/completions", fmt.Sprintf(`{"model":"tinychat","prompt":%s,"max_tokens":20,%s`, c, sp.fields), b.Tokenizer.Encode(code)},
		} {
			want, wantFin := reference(t, b, tc.prompt, 20, sp.s)
			t.Run(sp.name+tc.path, func(t *testing.T) {
				status, data := ts.post(t, tc.path, tc.body+"}")
				if status != 200 {
					t.Fatalf("status %d: %s", status, data)
				}
				var w whole
				if err := json.Unmarshal(data, &w); err != nil {
					t.Fatal(err)
				}
				got := w.Choices[0].Text
				if strings.Contains(tc.path, "chat") {
					got = w.Choices[0].Message.Content
					if w.Object != "chat.completion" || w.Choices[0].Message.Role != "assistant" {
						t.Errorf("response: %s", data)
					}
				}
				if got != want || w.Choices[0].FinishReason != wantFin {
					t.Errorf("whole: %q (%s), want %q (%s)", got, w.Choices[0].FinishReason, want, wantFin)
				}
				if u := w.Usage; u.PromptTokens != len(tc.prompt) || u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.PromptTokensDetails == nil {
					t.Errorf("usage %+v, prompt of %d tokens", u, len(tc.prompt))
				}
				texts, finish, u := streamed(t, ts, tc.path, tc.body+`,"stream":true,"stream_options":{"include_usage":true}}`)
				if len(texts) != 1 || texts[0] != want || finish[0] != wantFin {
					t.Errorf("streamed: %q %q, want %q (%s)", texts, finish, want, wantFin)
				}
				if u == nil || u.PromptTokens != len(tc.prompt) || u.CompletionTokens != w.Usage.CompletionTokens {
					t.Errorf("streamed usage %+v, whole %+v", u, w.Usage)
				}
			})
		}
	}
}

// TestStreamWithoutUsage checks a plain stream: no usage anywhere, and n
// choices each with their role chunk and finish.
func TestStreamChoices(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{})
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"n":2,"seed":5,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(raw, []byte(`"usage"`)) {
		t.Errorf("usage sent without stream_options.include_usage")
	}
	if !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
		t.Errorf("stream ends %q", raw[max(0, len(raw)-40):])
	}
	texts, finish, _ := streamed(t, ts, "/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"n":2,"seed":5,"stream":true}`)
	if len(texts) != 2 || finish[0] == "" || finish[1] == "" {
		t.Errorf("n=2 stream: %q %q", texts, finish)
	}
	status, data := ts.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"n":2,"seed":5}`)
	var w whole
	if status != 200 || json.Unmarshal(data, &w) != nil || len(w.Choices) != 2 {
		t.Fatalf("n=2: %d %s", status, data)
	}
	for i := range 2 {
		if w.Choices[i].Message.Content != texts[i] {
			t.Errorf("choice %d: whole %q, streamed %q", i, w.Choices[i].Message.Content, texts[i])
		}
	}
}

func TestErrors(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 4})
	long := strings.Repeat("fmt.Println(x) ", 2000)
	for _, tc := range []struct {
		method, path, body string
		status             int
		param, code        string
		contains           string
	}{
		{"POST", "/v1/chat/completions", `{"messages":[`, 400, "", "invalid_json", ""},
		{"POST", "/v1/chat/completions", `{"messages":"hi"}`, 400, "messages", "invalid_type", ""},
		{"POST", "/v1/chat/completions", `{"messages":[]}`, 400, "messages", "invalid_value", ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"temperature":-1}`, 400, "temperature", "invalid_value", ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`, 400, "max_tokens", "invalid_value", ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"n":9}`, 400, "n", "invalid_value", ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stop":7}`, 400, "stop", "invalid_type", ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"top_logprobs":3}`, 400, "top_logprobs", "invalid_value", "logprobs: true"},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`, 400, "stream_options", "invalid_value", ""},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"kv_press":"nosuch"}`, 400, "kv_press", "invalid_value", "unknown press"},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"kv_press":"keydiff","kv_press_ratio":1}`, 400, "kv_press_ratio", "invalid_value", "[0, 1)"},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":` + jsonString(long) + `}]}`, 400, "messages", "context_length_exceeded", "maximum context length is 4096 tokens"},
		{"POST", "/v1/completions", `{"prompt":` + jsonString(long) + `}`, 400, "prompt", "context_length_exceeded", "4096"},
		{"POST", "/v1/completions", `{"prompt":[1,2,99999]}`, 400, "prompt", "invalid_prompt", "vocabulary"},
		{"POST", "/v1/completions", `{}`, 400, "prompt", "invalid_value", ""},
		{"POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, 404, "model", "model_not_found", "gpt-4o"},
		{"POST", "/v1/embeddings", `{"model":"nope","input":"x"}`, 404, "model", "model_not_found", ""},
		{"GET", "/v1/models/nope", ``, 404, "model", "model_not_found", ""},
		{"GET", "/v1/chat/completions", ``, 405, "", "method_not_allowed", ""},
		{"POST", "/v1/models", `{}`, 405, "", "method_not_allowed", ""},
		{"POST", "/v1/nothing", `{}`, 404, "", "not_found", ""},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error *struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		name := tc.method + " " + tc.path + " " + tc.body[:min(len(tc.body), 60)]
		if err := json.Unmarshal(data, &e); err != nil || e.Error == nil {
			t.Errorf("%s: %d %s is not an OpenAI error", name, resp.StatusCode, data)
			continue
		}
		if resp.StatusCode != tc.status || e.Error.Type == "" || e.Error.Message == "" ||
			deref(e.Error.Param) != tc.param || deref(e.Error.Code) != tc.code || !strings.Contains(e.Error.Message, tc.contains) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, data)
		}
		if tc.status == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", name)
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestQueueFull fills a batch of one and a queue of one, then expects 429;
// the two held requests are then cancelled by their clients.
func TestQueueFull(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 1, QueueSize: 1})
	body := `{"prompt":"Once upon a time","max_tokens":3000,"ignore_eos":true,"stream":true}`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bodies []io.ReadCloser
	for i := range 2 {
		req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/completions", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v %v", i, err, resp)
		}
		bodies = append(bodies, resp.Body)
		if i == 0 { // wait until it runs, so that the next one queues
			br := bufio.NewReader(resp.Body)
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
	}
	status, data := ts.post(t, "/v1/completions", `{"prompt":"x","max_tokens":1}`)
	if status != 429 || !bytes.Contains(data, []byte("rate_limit_exceeded")) {
		t.Errorf("third request: %d %s", status, data)
	}
	cancel()
	for _, b := range bodies {
		b.Close()
	}
	if !ts.idle() {
		t.Errorf("after the clients left: %+v", ts.sched.Stats())
	}
}

func settle(ok func() bool) bool {
	for range 200 {
		if ok() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ok()
}

// TestConcurrentClients runs eight clients at once, streamed and not.
func TestConcurrentClients(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 8})
	var wg sync.WaitGroup
	results := make([]string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"messages":[{"role":"user","content":"Question %d: what is a goroutine?"}],"max_tokens":16,"seed":%d,"temperature":0.7`, i, i)
			if i%2 == 0 {
				_, finish, _ := streamed(t, ts, "/v1/chat/completions", body+`,"stream":true}`)
				if len(finish) == 1 && finish[0] != "" {
					results[i] = "ok"
				}
				return
			}
			status, data := ts.post(t, "/v1/chat/completions", body+"}")
			var w whole
			if status == 200 && json.Unmarshal(data, &w) == nil && len(w.Choices) == 1 && w.Choices[0].FinishReason != "" {
				results[i] = "ok"
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r != "ok" {
			t.Errorf("client %d did not complete", i)
		}
	}
}

// TestCancelMidStream has one client leave mid-stream while another keeps
// going: the other finishes, every KV block goes back, and once the server
// is closed no goroutine is left.
func TestCancelMidStream(t *testing.T) {
	tinychat(t) // its worker pool lives as long as the package's tests
	before := runtime.NumGoroutine()
	ts := start(t, engine.SchedulerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/chat/completions",
		strings.NewReader(`{"messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":2000,"ignore_eos":true,"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", err, resp)
	}
	other := make(chan []string)
	go func() {
		texts, _, _ := streamed(t, ts, "/v1/completions", `{"prompt":"Once upon a time","max_tokens":60,"ignore_eos":true,"stream":true}`)
		other <- texts
	}()
	br := bufio.NewReader(resp.Body)
	for range 10 { // a few chunks, then leave
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	resp.Body.Close()
	if texts := <-other; len(texts) != 1 || texts[0] == "" {
		t.Errorf("the other client got %q", texts)
	}
	if !ts.idle() {
		used, _ := ts.cache.Pool().Stats()
		t.Errorf("after the cancel and a flush: %d blocks still in use; %+v", used, ts.sched.Stats())
	}
	ts.close()
	http.DefaultClient.CloseIdleConnections()
	if !settle(func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}

func TestEmbeddings(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{})
	status, data := ts.post(t, "/v1/embeddings", `{"model":"tinychat","input":["hello world","hello world","func main() {}"]}`)
	if status != 200 {
		t.Fatalf("%d %s", status, data)
	}
	var resp struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 3 || resp.Object != "list" || resp.Usage.PromptTokens == 0 {
		t.Fatalf("response %s", data)
	}
	dot := func(a, b []float64) float64 {
		s := 0.0
		for i := range a {
			s += a[i] * b[i]
		}
		return s
	}
	e := resp.Data
	if len(e[0].Embedding) != ts.b.Net.Config.HiddenSize || math.Abs(dot(e[0].Embedding, e[0].Embedding)-1) > 1e-5 {
		t.Errorf("embedding of %d values, norm² %v", len(e[0].Embedding), dot(e[0].Embedding, e[0].Embedding))
	}
	if d := dot(e[0].Embedding, e[1].Embedding); d < 1-1e-6 {
		t.Errorf("same text, cosine %v", d)
	}
	if d := dot(e[0].Embedding, e[2].Embedding); d > 0.9999 {
		t.Errorf("different texts, cosine %v", d)
	}
	status, data = ts.post(t, "/v1/embeddings", `{"input":"hello","encoding_format":"base64"}`)
	if status != 200 || !bytes.Contains(data, []byte(`"embedding":"`)) {
		t.Errorf("base64: %d %s", status, data)
	}
}

func TestModelsHealthMetrics(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{})
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	if status, body := get("/v1/models"); status != 200 || !strings.Contains(body, `"id":"tinychat"`) || !strings.Contains(body, `"object":"list"`) {
		t.Errorf("/v1/models: %d %s", status, body)
	}
	if status, body := get("/v1/models/tinychat"); status != 200 || !strings.Contains(body, `"object":"model"`) {
		t.Errorf("/v1/models/tinychat: %d %s", status, body)
	}
	if status, body := get("/health"); status != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/health: %d %s", status, body)
	}
	ts.post(t, "/v1/completions", `{"prompt":"Hello","max_tokens":4}`)
	settle(func() bool { return ts.sched.Stats().Running == 0 }) // the snapshot follows the response
	status, body := get("/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	for _, want := range []string{
		`kvserve_queue_requests{model_name="tinychat"} 0`, `kvserve_running_sequences{model_name="tinychat"} 0`,
		`kvserve_prefix_evictions_total{model_name="tinychat"} 0`,
		`kvserve_http_requests_total{model_name="tinychat",path="/v1/completions",code="200"} 1`,
		`kvserve_request_prompt_tokens_count{model_name="tinychat"} 1`,
		`kvserve_e2e_request_latency_seconds_count{model_name="tinychat"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every family the README documents is there, on series labelled with
	// the model's name.
	for _, name := range documentedMetrics {
		if !regexp.MustCompile(`(?m)^` + name + `(_bucket|_count)?\{model_name="tinychat"`).MatchString(body) {
			t.Errorf("/metrics has no series of %s with model_name", name)
		}
	}
}

// documentedMetrics are the families the README's metrics table lists.
var documentedMetrics = []string{
	"kvserve_queue_requests", "kvserve_running_sequences", "kvserve_kv_used_bytes", "kvserve_kv_free_bytes",
	"kvserve_kv_capacity_bytes", "kvserve_kv_usage_ratio", "kvserve_kv_blocks_used", "kvserve_kv_blocks_free",
	"kvserve_prefix_cached_tokens", "kvserve_prefix_evictions_total", "kvserve_prompt_tokens_total",
	"kvserve_prompt_cached_tokens_total", "kvserve_prefill_tokens_total", "kvserve_generation_tokens_total",
	"kvserve_time_to_first_token_seconds", "kvserve_inter_token_latency_seconds", "kvserve_queue_wait_seconds",
	"kvserve_step_seconds", "kvserve_e2e_request_latency_seconds", "kvserve_request_prefill_time_seconds",
	"kvserve_request_decode_time_seconds", "kvserve_request_prompt_tokens", "kvserve_request_generation_tokens",
	"kvserve_finished_sequences_total", "kvserve_http_requests_total",
}
