package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/kvcache"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true},
		{"4GiB", 4 << 30, true},
		{"512 MiB", 512 << 20, true},
		{"2g", 2e9, true},
		{"1.5KiB", 1536, true},
		{"1e9", 1e9, true},
		{"-1", 0, false},
		{"lots", 0, false},
		{"", 0, false},
	} {
		got, err := parseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v", tc.in, got, err)
		}
	}
}

// TestServe starts the server on a free port, asks it one question, and
// stops it as a signal would.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 5 * time.Second}
	go func() {
		done <- serve(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"Hello","max_tokens":3}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"text_completion"`) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	if code, _, _ := kvserve(t, "serve", "--kv-memory", "lots"); code != 2 {
		t.Errorf("bad --kv-memory: exit %d, want 2", code)
	}
	if code, _, errOut := kvserve(t, "bench", "serve", "--help"); code != 0 || !strings.Contains(errOut, "--cancel-rate") {
		t.Errorf("bench serve --help: exit %d", code)
	}
}

// TestShutdownTimeoutAnswers: a non-streamed request still running when
// the shutdown timeout ends gets a 503 in OpenAI's shape, not an empty
// reply.
func TestShutdownTimeoutAnswers(t *testing.T) {
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 300 * time.Millisecond}
	base, stop := startServe(t, o)
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		// Long enough to outlast the timeout: 4 000 tokens take seconds.
		resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"package main","max_tokens":4000,"ignore_eos":true}`))
		if err != nil {
			got <- result{err: err}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{code: resp.StatusCode, body: string(body)}
	}()
	time.Sleep(300 * time.Millisecond) // the request is decoding
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }() // as SIGTERM would
	r := <-got
	if r.err != nil || r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, `"error"`) {
		t.Errorf("cut request: %d %q %v; want 503 with an error body", r.code, r.body, r.err)
	}
	<-stopped
}

// TestServeTwoModels: two models behind one address answer by name, an
// unknown name gets a 404 naming both, /v1/models lists both and /metrics
// tells their series apart by model_name; --ctx-size caps the context.
func TestServeTwoModels(t *testing.T) {
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 5 * time.Second,
		models: modelList{{name: "alpha"}, {name: "beta"}}, ctxSize: 512}
	base, stop := startServe(t, o)
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	tests := []struct {
		method, path, body string
		code               int
		want               []string
	}{
		{"POST", "/v1/completions", `{"model":"beta","prompt":"package main","max_tokens":2}`, 200, []string{`"model":"beta"`}},
		{"POST", "/v1/completions", `{"model":"alpha","prompt":"package main","max_tokens":2}`, 200, []string{`"model":"alpha"`}},
		{"POST", "/v1/completions", `{"prompt":"package main","max_tokens":2}`, 200, []string{`"model":"alpha"`}},
		{"POST", "/v1/chat/completions", `{"model":"gamma","messages":[{"role":"user","content":"hi"}]}`, 404, []string{"model_not_found", "`alpha`, `beta`"}},
		{"POST", "/v1/completions", `{"model":"beta","prompt":"` + strings.Repeat("x y ", 400) + `"}`, 400, []string{"512"}},
		{"GET", "/v1/models", "", 200, []string{`"id":"alpha"`, `"id":"beta"`, `"max_model_len":512`}},
		{"GET", "/v1/models/beta", "", 200, []string{`"id":"beta"`}},
		{"GET", "/health", "", 200, []string{"ok"}},
		{"GET", "/metrics", "", 200, []string{`kvserve_running_sequences{model_name="alpha"}`, `kvserve_running_sequences{model_name="beta"}`}},
	}
	for _, tt := range tests {
		code, body := do(tt.method, tt.path, tt.body)
		if code != tt.code {
			t.Errorf("%s %s %.60s: %d %s, want %d", tt.method, tt.path, tt.body, code, body, tt.code)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s %s: body lacks %q: %.300s", tt.method, tt.path, w, body)
			}
		}
	}
	stop()
	if code, _, errOut := kvserve(t, "serve", "--model", "a=x", "--model", "b=y", "--served-model-name", "c"); code != 2 || !strings.Contains(errOut, "NAME=PATH") {
		t.Errorf("--served-model-name with two models: exit %d, %s", code, errOut)
	}
}
