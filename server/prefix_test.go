package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/engine"
)

// chat sends a whole (not streamed) chat request with an optional API key
// and returns the response.
func (ts *testServer) chat(t *testing.T, key, body string) whole {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var w whole
	if resp.StatusCode != 200 || json.Unmarshal(data, &w) != nil || len(w.Choices) != 1 || w.Usage.PromptTokensDetails == nil {
		t.Fatalf("%d %s", resp.StatusCode, data)
	}
	return w
}

func cached(u *usage) int { return u.PromptTokensDetails.CachedTokens }

// TestMultiTurnReuse: the second turn of a conversation, which repeats the
// first turn's prompt and answer, finds all of it cached; the hit rate
// metric follows.
func TestMultiTurnReuse(t *testing.T) {
	// The answer, generated through the model's end-of-turn token
	// (ignore_eos), holds control tokens that the next turn sends back as
	// such: only with SpecialInMessages are they read as control tokens.
	ts := startServer(t, engine.SchedulerConfig{}, 256<<20, Config{SpecialInMessages: true})
	q1 := `{"role":"user","content":"Here is a list: apples, pears, plums, cherries, figs. Which fruit comes third?"}`
	w1 := ts.chat(t, "", `{"messages":[`+q1+`],"max_tokens":16,"temperature":0,"ignore_eos":true}`)
	if cached(&w1.Usage) != 0 {
		t.Errorf("first turn cached %d tokens", cached(&w1.Usage))
	}
	answer := w1.Choices[0].Message.Content
	turn2 := fmt.Sprintf(`{"messages":[%s,{"role":"assistant","content":%s},{"role":"user","content":"And which comes last?"}],"max_tokens":8,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`, q1, jsonString(answer))
	_, _, u := streamed(t, ts, "/v1/chat/completions", turn2)
	// Everything the first turn computed: its prompt and its answer but
	// the last token, which was sampled and never fed back.
	whole1 := w1.Usage.PromptTokens + w1.Usage.CompletionTokens - 1
	if u == nil || cached(u) != whole1 || u.PromptTokens <= whole1 {
		t.Errorf("second turn: %+v cached, want %d (the whole first turn)", u, whole1)
	}
	settle(func() bool { return ts.sched.Stats().Running == 0 })
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		fmt.Sprintf(`kvserve_prompt_cached_tokens_total{model_name="tinychat"} %d`, whole1),
		fmt.Sprintf(`kvserve_prompt_tokens_total{model_name="tinychat"} %d`, w1.Usage.PromptTokens+u.PromptTokens),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestTenantIsolation: the same prompt under another cache_salt or API key
// finds nothing cached; under the same one it finds all but its last
// token.
func TestTenantIsolation(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{})
	msgs := `"messages":[{"role":"user","content":"The secret code of tenant A is 7-4-1-9. Repeat it."}],"max_tokens":2,"temperature":0`
	var full int
	for i, tc := range []struct {
		key, salt string
		hit       bool
	}{
		{"", "tenant-a", false},
		{"", "tenant-b", false},
		{"", "tenant-a", true},
		{"", "", false}, // no salt, no key: a tenant of its own
		{"", "", true},
		{"sk-one", "", false},
		{"sk-two", "", false},
		{"sk-one", "", true},
		{"sk-one", "tenant-a", false}, // the key and the salt together
		{"sk-one", "tenant-a", true},
		{"sk-two", "tenant-b", false},
	} {
		body := "{" + msgs
		if tc.salt != "" {
			body += `,"cache_salt":` + jsonString(tc.salt)
		}
		w := ts.chat(t, tc.key, body+"}")
		full = w.Usage.PromptTokens - 1
		want := 0
		if tc.hit {
			want = full
		}
		if got := cached(&w.Usage); got != want {
			t.Errorf("request %d (key %q, cache_salt %q): cached %d, want %d", i, tc.key, tc.salt, got, want)
		}
	}
	if status, data := ts.post(t, "/v1/chat/completions", "{"+msgs+`,"cache_salt":""}`); status != 400 || !strings.Contains(string(data), "cache_salt") {
		t.Errorf("empty cache_salt: %d %s", status, data)
	}
	if status, data := ts.post(t, "/v1/completions", `{"prompt":"x","cache_salt":7}`); status != 400 || !strings.Contains(string(data), "cache_salt") {
		t.Errorf("numeric cache_salt: %d %s", status, data)
	}
}

func TestTenantSalt(t *testing.T) {
	str := func(s string) *string { return &s }
	salt := func(auth string, cs *string) string {
		r, _ := http.NewRequest("POST", "/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return tenantSalt(r, cs)
	}
	seen := map[string]string{}
	for _, tc := range []struct {
		auth string
		cs   *string
	}{
		{"", nil}, {"", str("a")}, {"", str("b")}, {"Bearer k1", nil}, {"Bearer k2", nil},
		{"Bearer k1", str("a")}, {"Bearer k2", str("a")}, {"Basic k1", nil},
	} {
		s := salt(tc.auth, tc.cs)
		name := fmt.Sprintf("%q/%v", tc.auth, tc.cs != nil)
		if prev, dup := seen[s]; dup {
			t.Errorf("%s and %s share the salt %q", prev, name, s)
		}
		seen[s] = name
		if strings.Contains(s, "k1") || strings.Contains(s, "k2") {
			t.Errorf("salt %q holds the API key", s)
		}
	}
	if salt("Bearer k1", nil) != salt("bearer  k1 ", nil) {
		t.Error("the scheme's case or spaces change the salt")
	}
}
