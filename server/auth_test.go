package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
)

// startWith starts a real server over b (its own scheduler and prefix
// cache) on a loopback port, logging to log.
func startWith(t *testing.T, b *engine.Bundle, api Config, log io.Writer) *testServer {
	t.Helper()
	m := NewMetrics()
	cache := engine.NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: 64 << 20})
	sched := engine.NewScheduler(b, engine.SchedulerConfig{MaxBatch: 2, Cache: cache, Observer: m})
	api.Metrics, api.Logger = m, slog.New(slog.NewTextHandler(log, nil))
	ts := &testServer{Server: httptest.NewServer(New(b, sched, api)), b: b, sched: sched, cache: cache}
	t.Cleanup(ts.close)
	return ts
}

// call sends one request with an optional Authorization header.
func call(t *testing.T, method, url, auth, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// TestAPIKeys checks access control over HTTP: every /v1 route needs one
// of the keys as a Bearer token, /health never does, /metrics only with
// MetricsAuth; a 401 is in OpenAI's error shape and never repeats the key.
func TestAPIKeys(t *testing.T) {
	const key1, key2, wrong = "sk-first-4f1c", "sk-second-9a2e", "sk-wrong-7d3b"
	for _, metricsAuth := range []bool{false, true} {
		var log bytes.Buffer
		ts := startWith(t, tinychat(t), Config{APIKeys: []string{key1, key2}, MetricsAuth: metricsAuth}, &log)
		completion := `{"prompt":"func main","max_tokens":2}`
		chatBody := `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
		metricsWant := 200
		if metricsAuth {
			metricsWant = 401
		}
		for _, tc := range []struct {
			method, path, auth, body string
			want                     int
		}{
			{"POST", "/v1/completions", "", completion, 401},
			{"POST", "/v1/completions", "Bearer " + wrong, completion, 401},
			{"POST", "/v1/completions", "Bearer " + key1[:len(key1)-1], completion, 401},
			{"POST", "/v1/completions", key1, completion, 401}, // no scheme
			{"POST", "/v1/completions", "Basic " + key1, completion, 401},
			{"POST", "/v1/completions", "Bearer " + key1, completion, 200},
			{"POST", "/v1/completions", "bearer " + key2, completion, 200},
			{"POST", "/v1/chat/completions", "", chatBody, 401},
			{"POST", "/v1/chat/completions", "Bearer " + key2, chatBody, 200},
			{"POST", "/v1/embeddings", "Bearer " + wrong, `{"input":"hi"}`, 401},
			{"POST", "/v1/embeddings", "Bearer " + key1, `{"input":"hi"}`, 200},
			{"GET", "/v1/models", "", "", 401},
			{"GET", "/v1/models", "Bearer " + key1, "", 200},
			{"GET", "/v1/models/" + tinychat(t).Name, "Bearer " + wrong, "", 401},
			{"GET", "/v1/nosuch", "", "", 401}, // no route is probed without a key
			{"GET", "/health", "", "", 200},
			{"GET", "/health", "Bearer " + wrong, "", 200},
			{"GET", "/metrics", "", "", metricsWant},
			{"GET", "/metrics", "Bearer " + wrong, "", metricsWant},
			{"GET", "/metrics", "Bearer " + key2, "", 200},
		} {
			code, h, body := call(t, tc.method, ts.URL+tc.path, tc.auth, tc.body)
			if code != tc.want {
				t.Errorf("metrics-auth %v: %s %s with %q: %d, want %d: %s", metricsAuth, tc.method, tc.path, tc.auth, code, tc.want, body)
				continue
			}
			if code != 401 {
				continue
			}
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type != "invalid_request_error" || e.Error.Code == nil || *e.Error.Code != "invalid_api_key" {
				t.Errorf("%s %s: 401 body %s is not OpenAI's error shape", tc.method, tc.path, body)
			}
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: 401 without a Bearer challenge: %q", tc.method, tc.path, h.Get("WWW-Authenticate"))
			}
			for _, k := range []string{key1, key2, wrong} {
				if strings.Contains(string(body), k) {
					t.Errorf("401 body repeats a key: %s", body)
				}
			}
		}
		// The server logged each request, and no key.
		if !strings.Contains(log.String(), "status=401") {
			t.Errorf("log has no 401s: %s", log.String())
		}
		for _, k := range []string{key1, key2, wrong} {
			if strings.Contains(log.String(), k) {
				t.Errorf("the log holds key %q", k)
			}
		}
	}
}

// TestAPIKeysCountedInMetrics checks that refused requests show in the
// request counter as 401s.
func TestAPIKeysCountedInMetrics(t *testing.T) {
	ts := startWith(t, tinychat(t), Config{APIKeys: []string{"k"}}, io.Discard)
	call(t, "GET", ts.URL+"/v1/models", "Bearer nope", "")
	_, _, body := call(t, "GET", ts.URL+"/metrics", "", "")
	if !strings.Contains(string(body), `path="/v1/models",code="401"} 1`) {
		t.Errorf("metrics do not count the 401:\n%s", grepLines(string(body), "401"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestNoKeysOpen checks that a server without keys takes any request,
// with or without an Authorization header (whose key then only names the
// prefix-cache tenant).
func TestNoKeysOpen(t *testing.T) {
	ts := startWith(t, tinychat(t), Config{}, io.Discard)
	for _, auth := range []string{"", "Bearer anything"} {
		if code, _, body := call(t, "GET", ts.URL+"/v1/models", auth, ""); code != 200 {
			t.Errorf("%q: %d %s", auth, code, body)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"abc", "", false},
		{"Basic abc", "", false},
		{"", "", false},
	} {
		if token, ok := bearerToken(tc.header); token != tc.token || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tc.header, token, ok, tc.token, tc.ok)
		}
	}
}

func TestKeyring(t *testing.T) {
	if newKeyring(nil) != nil {
		t.Error("no keys: want no keyring")
	}
	k := newKeyring([]string{"alpha", "beta-longer-key"})
	for key, want := range map[string]bool{"alpha": true, "beta-longer-key": true, "alph": false, "alphaa": false, "": false, "ALPHA": false} {
		if got := k.accepts(key); got != want {
			t.Errorf("accepts(%q) = %v, want %v", key, got, want)
		}
	}
}

// FuzzBearerToken checks that any header parses without panicking, that a
// token found is trimmed and non-empty, and that a token sent back in a
// Bearer header comes out the same.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x ", "Basic y", "", "Bearer", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := bearerToken(header)
		if !ok {
			return
		}
		if token == "" || token != strings.TrimSpace(token) {
			t.Fatalf("bearerToken(%q) = %q", header, token)
		}
		if again, ok := bearerToken("Bearer " + token); !ok || again != token {
			t.Fatalf("round trip of %q: %q, %v", token, again, ok)
		}
	})
}

// BenchmarkKeyringAccepts measures the key check of one request, against
// one key and against 64.
func BenchmarkKeyringAccepts(b *testing.B) {
	for _, n := range []int{1, 64} {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("sk-benchmark-key-%04d-0123456789abcdef", i)
		}
		k := newKeyring(keys)
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			for b.Loop() {
				if !k.accepts(keys[n-1]) {
					b.Fatal("key refused")
				}
			}
		})
	}
}
