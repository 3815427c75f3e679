package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/semcache/embed"
)

func startCached(t *testing.T) *testServer {
	t.Helper()
	c, err := semcache.New(context.Background(), semcache.DefaultConfig(), embed.NewHash(512))
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, engine.SchedulerConfig{}, 0, Config{SemCache: c})
}

type cachedReply struct {
	status int
	header string
	text   string
	finish string
	info   semcacheInfo
	prompt int // usage.prompt_tokens
}

// ask posts a chat request with the given headers and reads the reply,
// whole or streamed.
func (ts *testServer) ask(t *testing.T, body string, headers ...string) cachedReply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := cachedReply{status: resp.StatusCode, header: resp.Header.Get("X-Semcache")}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		for _, ev := range events(t, resp.Body) {
			if ev == "[DONE]" {
				continue
			}
			var c struct {
				Choices []struct {
					Delta        struct{ Content string } `json:"delta"`
					FinishReason *string                  `json:"finish_reason"`
				} `json:"choices"`
			}
			if err := json.Unmarshal([]byte(ev), &c); err != nil {
				t.Fatalf("event %q: %v", ev, err)
			}
			for _, ch := range c.Choices {
				out.text += ch.Delta.Content
				if ch.FinishReason != nil {
					out.finish = *ch.FinishReason
				}
			}
		}
		return out
	}
	data, _ := io.ReadAll(resp.Body)
	var r struct {
		Choices []struct {
			Message      struct{ Content string } `json:"message"`
			FinishReason string                   `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens int          `json:"prompt_tokens"`
			Semcache     semcacheInfo `json:"semcache"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("reply %s: %v", data, err)
	}
	if len(r.Choices) > 0 {
		out.text, out.finish = r.Choices[0].Message.Content, r.Choices[0].FinishReason
	}
	out.info, out.prompt = r.Usage.Semcache, r.Usage.PromptTokens
	return out
}

func TestSemcacheServesHitsLikeFreshAnswers(t *testing.T) {
	ts := startCached(t)
	body := `{"messages":[{"role":"user","content":"What does errors.As do in Go?"}],"temperature":0,"max_tokens":48,"stop":[" "],"semcache_category":"code"}`
	first := ts.ask(t, body)
	if first.status != 200 || !strings.HasPrefix(first.header, "miss") || first.info.Hit || first.finish != "stop" {
		t.Fatalf("first: %+v", first)
	}
	second := ts.ask(t, body)
	if !strings.HasPrefix(second.header, "hit; tier=exact") || !second.info.Hit || second.info.Tier != "exact" || second.info.Similarity != 1 {
		t.Fatalf("second: %+v", second)
	}
	if second.text != first.text || second.finish != "stop" {
		t.Fatalf("hit %q (%s), fresh %q", second.text, second.finish, first.text)
	}
	stream := ts.ask(t, strings.Replace(body, `"temperature"`, `"stream":true,"stream_options":{"include_usage":true},"temperature"`, 1))
	if !strings.HasPrefix(stream.header, "hit") || stream.text != first.text || stream.finish != "stop" {
		t.Fatalf("streamed hit: %+v, want %q", stream, first.text)
	}
	surface := ts.ask(t, strings.Replace(body, "What does errors.As do in Go?", "  what does errors.As do in Go ? ", 1))
	if surface.info.Tier != "surface" || surface.text != first.text {
		t.Fatalf("surface: %+v", surface)
	}
	if r := ts.ask(t, body, "Cache-Control", "no-cache"); r.header != "bypass" || r.info.Hit || r.text != first.text {
		t.Fatalf("no-cache: %+v", r)
	}
	if r := ts.ask(t, body, "Authorization", "Bearer another-tenant"); r.info.Hit || !strings.HasPrefix(r.header, "miss") {
		t.Fatalf("another tenant was served: %+v", r) // it stores an entry of its own: 2 entries below
	}
	if r := ts.ask(t, strings.Replace(body, `"messages"`, `"model":"nope","messages"`, 1)); r.status != http.StatusNotFound {
		t.Fatalf("wrong model: status %d", r.status)
	}
	if r := ts.ask(t, strings.Replace(body, `"code"`, `"poetry"`, 1)); r.status != 200 || r.info.Hit || r.info.Reason != "unknown_category" {
		t.Fatalf("unknown category: %+v", r)
	}
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kvserve_semcache_hits_total{model_name="tinychat",category="code",tier="exact"} 2`, `kvserve_semcache_hits_total{model_name="tinychat",category="code",tier="surface"} 1`, `kvserve_semcache_entries{model_name="tinychat",category="code"} 2`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestSemcacheNeverStoresSampledOrTruncated(t *testing.T) {
	ts := startCached(t)
	for _, body := range []string{
		`{"messages":[{"role":"user","content":"Tell me about Go."}],"max_tokens":8,"stop":[" "]}`,    // sampled
		`{"messages":[{"role":"user","content":"Tell me about Go."}],"temperature":0,"max_tokens":1}`, // truncated
		`{"messages":[{"role":"user","content":"Tell me about Go."}],"temperature":0,"max_tokens":0}`, // an error
	} {
		for i := range 2 {
			if r := ts.ask(t, body); r.info.Hit || strings.HasPrefix(r.header, "hit") {
				t.Fatalf("%s: request %d was a hit: %+v", body, i, r)
			}
		}
	}
}

func TestSemcacheICModeAddsExamplesAndStoresNothing(t *testing.T) {
	cfg := semcache.DefaultConfig()
	cfg.IC = semcache.ICConfig{K: 2, MinSimilarity: 0.2}
	c, err := semcache.New(context.Background(), cfg, embed.NewHash(512))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, engine.SchedulerConfig{}, 0, Config{SemCache: c})
	seed := `{"messages":[{"role":"user","content":"What does errors.As do in Go?"}],"temperature":0,"max_tokens":48,"stop":[" "],"semcache_category":"code"}`
	if r := ts.ask(t, seed); r.status != 200 || r.finish != "stop" {
		t.Fatalf("seed: %+v", r)
	}
	near := strings.Replace(seed, "What does errors.As do in Go?", "Is errors.As safe to call from several goroutines in Go?", 1)
	plain := ts.ask(t, near, "Cache-Control", "no-store")
	for i := range 2 {
		r := ts.ask(t, near)
		if r.status != 200 || r.info.Hit || !strings.Contains(r.header, "; ic=1") {
			t.Fatalf("near miss %d: %+v", i, r)
		}
		if r.prompt <= plain.prompt+5 {
			t.Fatalf("the prompt with an example has %d tokens, without %d", r.prompt, plain.prompt)
		}
	}
	for _, st := range c.Stats() {
		if st.Category == "code" && st.Entries != 1 {
			t.Fatalf("an answer made with examples was stored: %+v", st)
		}
	}
}

// TestSemcacheAuditsSemanticHits sets audit_rate 1: a semantic hit is also
// run through the model, and /metrics counts whether the model's answer to
// the paraphrase equals the cached one (found here by asking the model with
// Cache-Control: no-store).
func TestSemcacheAuditsSemanticHits(t *testing.T) {
	cfg := semcache.DefaultConfig()
	cfg.Default = semcache.Policy{Threshold: 0.6}
	cfg.Categories = map[string]semcache.Policy{"code": {Threshold: 0.6}}
	cfg.LoadAdapt, cfg.AuditRate = 0, 1
	c, err := semcache.New(context.Background(), cfg, embed.NewHash(512))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, engine.SchedulerConfig{}, 0, Config{SemCache: c})
	ask := func(q string) string {
		return `{"messages":[{"role":"user","content":"` + q + `"}],"temperature":0,"max_tokens":48,"stop":[" "],"semcache_category":"code"}`
	}
	first := ts.ask(t, ask("What does errors.As do in Go?"))
	if again := ts.ask(t, ask("What does errors.As do in Go?")); again.info.Tier != "exact" {
		t.Fatalf("not stored: %+v (first %+v)", again, first)
	}
	hit := ts.ask(t, ask("In Go, what does errors.As do?"))
	if hit.info.Tier != "semantic" || hit.text != first.text {
		t.Fatalf("paraphrase: %+v", hit)
	}
	fresh := ts.ask(t, ask("In Go, what does errors.As do?"), "Cache-Control", "no-store")
	want, other := "match", "mismatch"
	if fresh.text != first.text {
		want, other = other, want
	}
	series := `kvserve_semcache_audits_total{model_name="tinychat",category="code",result="%s"} 1`
	var metrics []byte
	for range 200 { // the audit runs after the hit was answered
		resp, err := http.Get(ts.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(metrics), "kvserve_semcache_audits_total{") {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !strings.Contains(string(metrics), fmt.Sprintf(series, want)) || strings.Contains(string(metrics), fmt.Sprintf(series, other)) {
		t.Fatalf("fresh answer %q, cached %q: /metrics should count one %s audit:\n%s", fresh.text, first.text, want, metrics)
	}
	if n := strings.Count(string(metrics), "kvserve_semcache_audits_total{"); n != 1 {
		t.Errorf("%d audit series, want 1 (exact hits are not audited)", n)
	}
}
