package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/internal/redistest"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/codec"
)

// startServe runs serve with o on a free port until the returned stop is
// called (as a signal would), and returns its base URL.
func startServe(t *testing.T, o serveOptions) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
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
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("serve did not stop")
		}
	}
	t.Cleanup(stop)
	return base, stop
}

// cachedTokens sends a chat completion and returns the prompt tokens the
// server reports cached, and the answer.
func cachedTokens(t *testing.T, base, salt, content string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"messages": []map[string]string{{"role": "user", "content": content}}, "max_tokens": 4, "temperature": 0, "cache_salt": salt,
	})
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			Details      struct {
				Cached int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Choices) == 0 {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return out.Usage.Details.Cached, out.Choices[0].Message.Content
}

// scrapeMetric returns the value of one sample line of /metrics.
func scrapeMetric(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /metrics", series)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestServeTiers: a restarted server loads a prompt from disk; a second
// server on the same Redis loads the first one's prompt; another tenant
// finds nothing; /metrics counts it all.
func TestServeTiers(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	level, _ := codec.ParseLevel("cg1")
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 5 * time.Second, prefixCache: true,
		tiers: tierOptions{disk: dir, diskSize: 1 << 30, level: level, chunk: 64, redisTimeout: 250 * time.Millisecond}}
	var sb strings.Builder
	for i := range 20 {
		fmt.Fprintf(&sb, "Entry %d: the colour of box %d is %s.\n", i, i, []string{"red", "green", "blue"}[i%3])
	}
	doc := sb.String() + "What is the colour of box 4?"
	salt := fmt.Sprint(time.Now().UnixNano()) // fresh keys on a shared Redis

	// Disk: write, restart, load.
	a, stopA := startServe(t, o)
	if c, _ := cachedTokens(t, a, salt, doc); c != 0 {
		t.Fatalf("first request found %d tokens cached", c)
	}
	stopA()
	b, stopB := startServe(t, o)
	c, _ := cachedTokens(t, b, salt, doc)
	if c < 64 {
		t.Errorf("restarted server loaded %d tokens from disk", c)
	}
	if hits := scrapeMetric(t, b, `kvserve_kv_tier_hits_total{model_name="tinychat",tier="disk"}`); hits < 1 {
		t.Errorf("disk hits %v", hits)
	}
	stopB()

	// Redis: two servers at once, the second loads the first's prompt.
	o.tiers = tierOptions{redis: srv.URL, level: level, chunk: 64, redisTimeout: 250 * time.Millisecond}
	r1, _ := startServe(t, o)
	r2, _ := startServe(t, o)
	cachedTokens(t, r1, salt+"r", doc)
	// The first server writes asynchronously: wait until its bytes
	// written to Redis stop growing.
	written := -1.0
	for range 100 {
		time.Sleep(50 * time.Millisecond)
		w := scrapeMetric(t, r1, `kvserve_kv_tier_written_bytes_total{model_name="tinychat",tier="redis"}`)
		if w > 0 && w == written {
			break
		}
		written = w
	}
	if got, _ := cachedTokens(t, r2, salt+"other-tenant", doc); got != 0 {
		t.Fatalf("another tenant found %d tokens", got)
	}
	got, _ := cachedTokens(t, r2, salt+"r", doc)
	if got < 64 {
		t.Errorf("second server loaded %d tokens of the first's from Redis", got)
	}
	if h := scrapeMetric(t, r2, `kvserve_kv_tier_hits_total{model_name="tinychat",tier="redis"}`); h < 1 {
		t.Errorf("redis hits %v", h)
	}
}
