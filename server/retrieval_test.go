package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/retrieve"
)

// TestRetrievalOverHTTP checks that the server's --retrieval and the
// request's kv_retrieval fields choose how decode steps read the cache: a
// retrieved answer is the one Bundle.Generate gives through the same
// selector, with the KV resident or in a cold tier, and bad fields are
// refused with 400.
func TestRetrievalOverHTTP(t *testing.T) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 16) + "What jumps?"
	ask := func(t *testing.T, ts *testServer, extra string) (int, string) {
		t.Helper()
		body := fmt.Sprintf(`{"messages":[{"role":"user","content":%s}],"max_tokens":12,"temperature":0%s}`, jsonString(text), extra)
		code, data := ts.post(t, "/v1/chat/completions", body)
		if code != 200 {
			return code, string(data)
		}
		var resp struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &resp); err != nil {
			t.Fatal(err)
		}
		return code, resp.Choices[0].Message.Content
	}
	for _, tc := range []struct {
		name   string
		server Config
		extra  string
		method string // the selector the answer must match ("" for none)
		budget float64
	}{
		{"request quest", Config{}, `,"kv_retrieval":"quest","kv_retrieval_budget":0.25`, "quest", 0.25},
		{"server tokenselect, cold", Config{Retrieval: "tokenselect", RetrievalBudget: retrieve.Budget{Fraction: 0.25}, RetrievalCold: true}, ``, "tokenselect", 0.25},
		{"request budget in tokens", Config{Retrieval: "quest", RetrievalBudget: retrieve.Budget{Fraction: 0.5}}, `,"kv_retrieval_budget":40`, "quest", 40},
		{"request opts out", Config{Retrieval: "quest", RetrievalBudget: retrieve.Budget{Fraction: 0.25}}, `,"kv_retrieval":"none"`, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, engine.SchedulerConfig{}, 256<<20, tc.server)
			code, got := ask(t, ts, tc.extra)
			if code != 200 {
				t.Fatalf("%d %s", code, got)
			}
			prompt := chatPrompt(t, ts.b, text)
			req := engine.Request{Prompt: prompt, MaxTokens: 12}
			if tc.method != "" {
				b := retrieve.Budget{Fraction: tc.budget}
				if tc.budget > 1 {
					b = retrieve.Budget{Tokens: int(tc.budget)}
				}
				r, err := retrieve.New(tc.method, ts.b.Net.Config, retrieve.Options{Budget: b})
				if err != nil {
					t.Fatal(err)
				}
				req.Retrieve = r
			}
			res, err := ts.b.Generate(context.Background(), ts.b.Net.NewCache(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := ts.b.Tokenizer.Decode(res.Output); got != want {
				t.Errorf("answer %q, Generate through %q says %q", got, tc.method, want)
			}
		})
	}
	ts := startServer(t, engine.SchedulerConfig{}, 256<<20, Config{})
	for _, extra := range []string{`,"kv_retrieval":"nope","kv_retrieval_budget":0.5`, `,"kv_retrieval":"quest","kv_retrieval_budget":1.5`,
		`,"kv_retrieval":"quest","kv_retrieval_budget":-1`, `,"kv_retrieval":"quest"`} {
		if code, body := ask(t, ts, extra); code != 400 || !strings.Contains(body, "kv_retrieval") {
			t.Errorf("%s: %d %s, want 400 naming the field", extra, code, body)
		}
	}
}
