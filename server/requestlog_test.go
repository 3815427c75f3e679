package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kvserve/kvserve/engine"
)

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestRequestLog: each request logs one line with its id (also sent back
// as a header), its tokens, TTFT, duration in seconds and finish reason;
// an error answer logs its reason at warn level.
func TestRequestLog(t *testing.T) {
	var buf lockedBuffer
	ts := startServer(t, engine.SchedulerConfig{}, 64<<20, Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	tests := []struct {
		name, body, sentID string
		status             int
		want               map[string]any // fields and values; nil value: present
	}{
		{"completion", `{"prompt":"package main","max_tokens":3,"ignore_eos":true}`, "client-id-7", 200,
			map[string]any{"id": "client-id-7", "level": "INFO", "status": 200.0, "completion_tokens": 3.0, "finish": "length",
				"prompt_tokens": nil, "cached_tokens": nil, "ttft_s": nil, "duration_s": nil}},
		{"bad request", `{"prompt":"x","max_tokens":-1}`, "", 400,
			map[string]any{"level": "WARN", "status": 400.0, "error": nil, "id": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.URL+"/v1/completions", strings.NewReader(tt.body))
			if tt.sentID != "" {
				req.Header.Set(RequestIDHeader, tt.sentID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get(RequestIDHeader)
			if resp.StatusCode != tt.status || id == "" || (tt.sentID != "" && id != tt.sentID) {
				t.Fatalf("status %d, id %q", resp.StatusCode, id)
			}
			var line map[string]any
			settle(func() bool {
				for _, l := range buf.lines() {
					if l["msg"] == "request" && l["id"] == id {
						line = l
						return true
					}
				}
				return false
			})
			if line == nil {
				t.Fatalf("no log line with id %s", id)
			}
			for k, v := range tt.want {
				got, ok := line[k]
				if !ok || (v != nil && got != v) {
					t.Errorf("%s = %v (present %v), want %v; line %v", k, got, ok, v, line)
				}
			}
		})
	}
}
