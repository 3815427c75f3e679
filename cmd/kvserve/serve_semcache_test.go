package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/internal/redistest"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/semcache/embed"
)

const bertTiny = "../../semcache/embed/testdata/bert-tiny"

func postJSON(t *testing.T, url, body string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestServeEmbedModel serves the BERT fixture with --embed-model (shared
// with the response cache's bert: embedder) and checks /v1/embeddings
// against the encoder called directly.
func TestServeEmbedModel(t *testing.T) {
	enc, err := embed.LoadBERT(bertTiny)
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"How do I reverse a slice in Go?", "Ça va? 東京", "hello"}
	want, err := enc.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	sc := &semcacheOptions{on: true, embedder: "bert:" + bertTiny}
	if err := sc.check(); err != nil {
		t.Fatal(err)
	}
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 5 * time.Second,
		prefixCache: true, embedModel: bertTiny, semcache: sc}
	base, _ := startServe(t, o)

	in, _ := json.Marshal(texts)
	for _, format := range []string{"float", "base64"} {
		code, _, body := postJSON(t, base+"/v1/embeddings", fmt.Sprintf(`{"model":"bert-tiny","input":%s,"encoding_format":%q}`, in, format))
		if code != 200 {
			t.Fatalf("%s: %d %s", format, code, body)
		}
		var out struct {
			Model string `json:"model"`
			Data  []struct {
				Index     int             `json:"index"`
				Embedding json.RawMessage `json:"embedding"`
			} `json:"data"`
			Usage struct {
				PromptTokens int `json:"prompt_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		if out.Model != "bert-tiny" || len(out.Data) != len(texts) || out.Usage.PromptTokens < len(texts)*3 {
			t.Fatalf("%s: model %q, %d vectors, %d prompt tokens: %s", format, out.Model, len(out.Data), out.Usage.PromptTokens, body)
		}
		for i, d := range out.Data {
			var got []float32
			if format == "float" {
				json.Unmarshal(d.Embedding, &got)
			} else {
				var s string
				json.Unmarshal(d.Embedding, &s)
				raw, _ := base64.StdEncoding.DecodeString(s)
				for j := 0; j+4 <= len(raw); j += 4 {
					got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
				}
			}
			if d.Index != i || len(got) != len(want[i]) {
				t.Fatalf("%s: item %d has index %d and %d dims, want %d", format, i, d.Index, len(got), len(want[i]))
			}
			var norm float64
			for _, x := range want[i] {
				norm += float64(x) * float64(x)
			}
			norm = math.Sqrt(norm)
			for j := range got {
				if d := math.Abs(float64(got[j]) - float64(want[i][j])/norm); d > 1e-6 {
					t.Fatalf("%s: %q dim %d: served %v, encoder %v", format, texts[i], j, got[j], float64(want[i][j])/norm)
				}
			}
		}
	}

	// The served model still embeds with its own states; /v1/models lists
	// both; the encoder does not generate and takes no token ids.
	code, _, body := postJSON(t, base+"/v1/embeddings", `{"model":"tinychat","input":"hello"}`)
	if code != 200 || !strings.Contains(string(body), `"model":"tinychat"`) {
		t.Fatalf("model embeddings: %d %s", code, body)
	}
	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	models, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(models), `"id":"bert-tiny"`) || !strings.Contains(string(models), `"id":"tinychat"`) {
		t.Errorf("/v1/models: %s", models)
	}
	for _, tc := range []struct {
		path, body string
		code       int
		has        string
	}{
		{"/v1/chat/completions", `{"model":"bert-tiny","messages":[{"role":"user","content":"hi"}]}`, 400, "sentence encoder"},
		{"/v1/embeddings", `{"model":"bert-tiny","input":[1,2,3]}`, 400, "not token ids"},
		{"/v1/embeddings", `{"model":"bert-tiny","input":"x","dimensions":8}`, 400, "dimensions"},
		{"/v1/embeddings", `{"model":"bert-tiny","input":"x","encoding_format":"int8"}`, 400, "encoding_format"},
		{"/v1/embeddings", `{"model":"bert-tiny"}`, 400, "input is required"},
		{"/v1/embeddings", `{"model":"bert-small","input":"x"}`, 404, "does not exist"},
	} {
		code, _, body := postJSON(t, base+tc.path, tc.body)
		if code != tc.code || !strings.Contains(string(body), tc.has) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.path, tc.body, code, body, tc.code, tc.has)
		}
	}
}

// TestServeSemcacheRedis runs two servers with --semcache --kv-redis one
// after the other: the second answers the first's request from the cache
// it loaded from Redis, for the same tenant only.
func TestServeSemcacheRedis(t *testing.T) {
	srv := redistest.Start(t)
	sc := &semcacheOptions{on: true}
	if err := sc.check(); err != nil {
		t.Fatal(err)
	}
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 5 * time.Second,
		prefixCache: true, semcache: sc, tiers: tierOptions{redis: srv.URL, chunk: 64, redisTimeout: 250 * time.Millisecond}}
	salt := fmt.Sprint(time.Now().UnixNano()) // fresh tenants on a shared Redis
	ask := func(base, salt string) (string, string) {
		code, h, body := postJSON(t, base+"/v1/chat/completions",
			fmt.Sprintf(`{"messages":[{"role":"user","content":"Name a colour."}],"max_tokens":40,"temperature":0,"cache_salt":%q}`, salt))
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		var out struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		json.Unmarshal(body, &out)
		return h.Get("X-Semcache"), out.Choices[0].Message.Content
	}
	a, stopA := startServe(t, o)
	h, first := ask(a, salt)
	if !strings.HasPrefix(h, "miss") {
		t.Fatalf("first request: X-Semcache %q", h)
	}
	if h, _ := ask(a, salt); !strings.HasPrefix(h, "hit; tier=exact") {
		t.Fatalf("the answer was not stored (X-Semcache %q)", h)
	}
	stopA()
	b, _ := startServe(t, o)
	h, again := ask(b, salt)
	if !strings.HasPrefix(h, "hit; tier=exact") || again != first {
		t.Errorf("restarted server: X-Semcache %q, answer %q; want an exact hit with %q", h, again, first)
	}
	if h, _ := ask(b, salt+"other"); !strings.HasPrefix(h, "miss") {
		t.Errorf("another tenant: X-Semcache %q, want a miss", h)
	}
}

// TestServeEmbedModelWithTwoModels: the router sends the encoder's
// requests to the first model's server, and lists it once.
func TestServeEmbedModelWithTwoModels(t *testing.T) {
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 5 * time.Second,
		models: modelList{{name: "alpha"}, {name: "beta"}}, ctxSize: 512, embedModel: bertTiny}
	base, _ := startServe(t, o)
	code, _, body := postJSON(t, base+"/v1/embeddings", `{"model":"bert-tiny","input":"hello"}`)
	if code != 200 || !strings.Contains(string(body), `"model":"bert-tiny"`) {
		t.Fatalf("encoder through the router: %d %s", code, body)
	}
	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	models, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Count(string(models), `"id":"bert-tiny"`) != 1 || !strings.Contains(string(models), `"id":"beta"`) {
		t.Errorf("/v1/models: %s", models)
	}
}
