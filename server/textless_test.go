package server

import (
	"encoding/json"
	"github.com/kvserve/kvserve/internal/fixture"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
)

// baseModelDir is the bundled tinychat without its chat template.
func baseModelDir(t *testing.T) string { return fixture.BaseModel(t) }

func openBundle(t *testing.T, dir string, opt engine.Options) *engine.Bundle {
	t.Helper()
	pool := compute.NewPool(0)
	b, err := engine.OpenWith(dir, pool, opt)
	if err != nil {
		pool.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); pool.Close() })
	return b
}

// apiErr is OpenAI's error body.
type apiErr struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// wantError checks a 400 in OpenAI's shape whose message holds each of
// want.
func wantError(t *testing.T, what string, code int, body []byte, errCode string, want ...string) {
	t.Helper()
	var e apiErr
	if err := json.Unmarshal(body, &e); err != nil || code != 400 || e.Error.Type != "invalid_request_error" || e.Error.Code == nil || *e.Error.Code != errCode {
		t.Errorf("%s: %d %s; want a 400 with code %s", what, code, body, errCode)
		return
	}
	for _, w := range want {
		if !strings.Contains(e.Error.Message, w) {
			t.Errorf("%s: message %q does not mention %q", what, e.Error.Message, w)
		}
	}
}

// TestBaseModelServer serves a model without a chat template: completions
// work and match the bundled model's, chat is a 400 naming the model and
// --chat-template, and works with a template given.
func TestBaseModelServer(t *testing.T) {
	dir := baseModelDir(t)
	completion := `{"prompt":"func main() {","max_tokens":6,"temperature":0}`
	chatBody := `{"messages":[{"role":"user","content":"What is the special magic number?"}],"max_tokens":6,"temperature":0}`
	ref := startWith(t, tinychat(t), Config{}, io.Discard)
	_, wantText := ref.post(t, "/v1/completions", completion)
	_, wantChat := ref.post(t, "/v1/chat/completions", chatBody)
	text := func(body []byte) string {
		var w whole
		json.Unmarshal(body, &w)
		if len(w.Choices) == 0 {
			return ""
		}
		return w.Choices[0].Text + w.Choices[0].Message.Content
	}

	ts := startWith(t, openBundle(t, dir, engine.Options{}), Config{}, io.Discard)
	code, body := ts.post(t, "/v1/completions", completion)
	if code != 200 || text(body) != text(wantText) || text(body) == "" {
		t.Errorf("completion: %d %s; want the bundled model's %s", code, body, wantText)
	}
	code, body = ts.post(t, "/v1/chat/completions", chatBody)
	wantError(t, "chat without a template", code, body, "chat_template_missing", "`"+filepath.Base(dir)+"`", "--chat-template FILE", "/v1/completions")

	ts = startWith(t, openBundle(t, dir, engine.Options{ChatTemplateFile: "../models/tinychat/chat_template.jinja"}), Config{}, io.Discard)
	code, body = ts.post(t, "/v1/chat/completions", chatBody)
	if code != 200 || text(body) != text(wantChat) || text(body) == "" {
		t.Errorf("chat with --chat-template: %d %s; want the bundled model's %s", code, body, wantChat)
	}
}

// TestWeightsOnlyServer serves a folder without tokenizer.json: what needs
// text is a 400 naming tokenizer.json; embeddings of token ids work.
func TestWeightsOnlyServer(t *testing.T) {
	ts := startWith(t, openBundle(t, "../model/testdata/archs/qwen2", engine.Options{}), Config{}, io.Discard)
	for _, tc := range []struct{ path, body, param string }{
		{"/v1/completions", `{"prompt":"hello"}`, "/v1/completions"},
		{"/v1/completions", `{"prompt":[1,2,3]}`, "/v1/completions"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, "/v1/chat/completions"},
		{"/v1/embeddings", `{"input":"hello"}`, "/v1/embeddings"},
	} {
		code, body := ts.post(t, tc.path, tc.body)
		wantError(t, tc.path+" "+tc.body, code, body, "tokenizer_missing", "no tokenizer.json", "`qwen2`", tc.param, "--prompt-ids")
	}
	code, body := ts.post(t, "/v1/embeddings", `{"input":[1,2,3]}`)
	var emb struct {
		Data []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &emb); code != 200 || err != nil || len(emb.Data) != 1 || len(emb.Data[0].Embedding) != ts.b.Net.Config.HiddenSize {
		t.Errorf("embeddings of ids: %d %s", code, body)
	}
}
