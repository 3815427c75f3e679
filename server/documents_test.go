package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	kvchunk "github.com/kvserve/kvserve/kvcache/chunk"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

// startDocs starts a server with the documents extension, its chunk cache
// in the prefix cache's pool.
func startDocs(t *testing.T) (*testServer, *blend.Blender) {
	t.Helper()
	b := tinychat(t)
	m := NewMetrics()
	cache := engine.NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: 256 << 20})
	chunks := kvchunk.New(cache.Pool())
	bl := &blend.Blender{Net: b.Net, Chunks: chunks, ModelName: b.Name}
	sched := engine.NewScheduler(b, engine.SchedulerConfig{Cache: engine.ChunkCache{CacheAllocator: cache, Chunks: chunks}, Observer: m})
	api := Config{Metrics: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Blender: bl}
	ts := &testServer{Server: httptest.NewServer(New(b, sched, api)), b: b, sched: sched, cache: cache}
	t.Cleanup(ts.close)
	return ts, bl
}

var testDocs = []string{
	"// VAR QXKZP = 48213\nfunc parse(s string) int {\n\treturn len(s)\n}",
	"// One of the special magic numbers for harbor is: 7712094.\ntype Reader struct{ buf []byte }",
	"// VAR LMTRV = VAR QXKZP\nfunc (r *Reader) Read(p []byte) (int, error) {\n\treturn copy(p, r.buf), nil\n}",
}

func docsBody(docs []string, extra string) string {
	d, _ := json.Marshal(docs)
	return fmt.Sprintf(`{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the special magic number for harbor mentioned in the provided text?"}],"documents":%s,"max_tokens":12,"temperature":0%s}`, d, extra)
}

// TestDocumentsReused: the same documents in another order are found in
// the chunk cache (cached tokens counted), the answer is the one the
// method gives outside the server, tenants never share documents, and
// /metrics counts hits, misses and recomputed tokens.
func TestDocumentsReused(t *testing.T) {
	ts, bl := startDocs(t)
	w1 := ts.chat(t, "", docsBody(testDocs, ""))
	if c := cached(&w1.Usage); c != 0 {
		t.Errorf("first request: %d cached tokens, want 0", c)
	}
	reordered := []string{testDocs[2], testDocs[0], testDocs[1]}
	w2 := ts.chat(t, "", docsBody(reordered, ""))
	docTokens := 0
	for _, d := range testDocs {
		docTokens += len(ts.b.Tokenizer.Encode(d))
	}
	if c := cached(&w2.Usage); c != docTokens {
		t.Errorf("reordered documents: %d cached tokens, want %d (every document)", c, docTokens)
	}
	if want := answerOutside(t, ts.b, reordered); w2.Choices[0].Message.Content != want {
		t.Errorf("server answered %q, cacheblend outside the server %q", w2.Choices[0].Message.Content, want)
	}
	// Another tenant finds none of them.
	w3 := ts.chat(t, "bob-key", docsBody(reordered, ""))
	if c := cached(&w3.Usage); c != 0 {
		t.Errorf("another tenant: %d cached tokens, want 0", c)
	}
	if st := bl.Chunks.Stats(); st.Entries != 6 || st.Hits != 3 || st.Misses != 6 {
		t.Errorf("chunk cache %+v, want 6 entries (3 per tenant), 3 hits, 6 misses", st)
	}
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`kvserve_chunk_hits_total{model_name="tinychat"} 3`, `kvserve_chunk_misses_total{model_name="tinychat"} 6`, `kvserve_chunk_recomputed_tokens_total{model_name="tinychat"}`, `kvserve_chunk_cached_documents{model_name="tinychat"} 6`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// answerOutside runs cacheblend on the request's prompt with warm
// documents, as bench accuracy --reuse does, and decodes greedily.
func answerOutside(t *testing.T, b *engine.Bundle, docs []string) string {
	t.Helper()
	text, err := b.ChatPrompt([]chat.Message{{Role: "system", Content: "You are a helpful assistant."},
		{Role: "user", Content: strings.Join(docs, "\n\n") + "\n\nWhat is the special magic number for harbor mentioned in the provided text?"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := blend.Split(text, docs, b.Tokenizer.Encode)
	if err != nil {
		t.Fatal(err)
	}
	bl := &blend.Blender{Net: b.Net, Chunks: kvchunk.New(b.Net.NewPool(0, kvcache.F32)), ModelName: b.Name}
	if _, err := bl.Warm("", p); err != nil {
		t.Fatal(err)
	}
	res, err := blend.CacheBlend{}.Prefill(bl, "", p)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Cache.Release()
	var out []int
	logits := res.Logits
	for len(out) < 12 {
		id := 0
		for i, v := range logits {
			if v > logits[id] {
				id = i
			}
		}
		if slices.Contains(b.Stop, id) {
			break
		}
		out = append(out, id)
		if logits, err = b.Net.Forward(res.Cache, []int{id}, model.LastLogits); err != nil {
			t.Fatal(err)
		}
	}
	return b.Tokenizer.Decode(out)
}

// TestDocumentsBadInput: bad documents get a 400 naming the field.
func TestDocumentsBadInput(t *testing.T) {
	ts, _ := startDocs(t)
	long := strings.Repeat("func f() { return }\n", 1200)
	for _, tc := range []struct {
		name, docs, param string
	}{
		{"empty list", `[]`, "documents"},
		{"empty document", `["a", ""]`, "documents[1]"},
		{"blank document", `["   "]`, "documents[0]"},
		{"a number", `[42]`, "documents[0]"},
		{"an object", `["ok", {"text":"x"}]`, "documents[1]"},
		{"null", `[null]`, "documents[0]"},
		{"too long", `["` + strings.ReplaceAll(long, "\n", `\n`) + `"]`, "documents[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"messages":[{"role":"user","content":"hi"}],"documents":` + tc.docs + `}`
			resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct {
					Param *string `json:"param"`
				} `json:"error"`
			}
			data, _ := io.ReadAll(resp.Body)
			json.Unmarshal(data, &e)
			if resp.StatusCode != 400 || e.Error.Param == nil || *e.Error.Param != tc.param {
				t.Errorf("%d %s, want 400 naming %s", resp.StatusCode, data, tc.param)
			}
		})
	}
}
