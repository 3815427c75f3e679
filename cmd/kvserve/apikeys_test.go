package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/kvcache"
)

// TestAPIKeyFlags gathers keys from --api-key, --api-key-file and the
// environment, and checks that bad keys are refused without being quoted.
func TestAPIKeyFlags(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("keys", "# team keys\nsk-file-1\r\n\n  sk-file-2  \nsk-flag-1\n")
	empty := file("empty", "# nothing\n\n")
	spaced := file("spaced", "sk-ok\nsk secret-half\n")
	for _, tc := range []struct {
		name    string
		args    []string
		env     string
		want    []string
		wantErr string
	}{
		{"none", nil, "", nil, ""},
		{"flags", []string{"--api-key", "sk-flag-1", "--api-key", "sk-flag-2"}, "", []string{"sk-flag-1", "sk-flag-2"}, ""},
		{"all sources, no duplicates", []string{"--api-key", "sk-flag-1", "--api-key-file", good}, "sk-env", []string{"sk-flag-1", "sk-file-1", "sk-file-2", "sk-env"}, ""},
		{"env alone", nil, " sk-env ", []string{"sk-env"}, ""},
		{"empty flag", []string{"--api-key", " "}, "", nil, "empty API key"},
		{"key with a space", []string{"--api-key", "sk secret"}, "", nil, "white space"},
		{"empty file", []string{"--api-key-file", empty}, "", nil, "holds no keys"},
		{"bad line", []string{"--api-key-file", spaced}, "", nil, "line 2"},
		{"missing file", []string{"--api-key-file", filepath.Join(dir, "nosuch")}, "", nil, "no such file"},
		{"bad env", nil, "sk\tsecret", nil, "$KVSERVE_API_KEY"},
		{"metrics auth without keys", []string{"--metrics-auth"}, "", nil, "--metrics-auth needs an API key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := addAPIKeyFlags(fs)
			err := fs.Parse(tc.args)
			var keys []string
			if err == nil {
				keys, err = f.resolve(func(name string) string {
					if name == apiKeyEnv {
						return tc.env
					}
					return ""
				})
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				for _, secret := range []string{"secret", "sk-ok"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q quotes a key", err)
					}
				}
				return
			}
			if err != nil || !slices.Equal(keys, tc.want) {
				t.Errorf("keys %q, %v; want %q", keys, err, tc.want)
			}
		})
	}
}

// TestServeAPIKey starts kvserve serve with a key and checks over HTTP:
// no key and a wrong key get 401, the key gets 200, /health stays open;
// the log never holds the key.
func TestServeAPIKey(t *testing.T) {
	const key = "sk-serve-test-31d9"
	t.Setenv(apiKeyEnv, "") // bench serve below must not find one
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	var log bytes.Buffer
	o := serveOptions{host: "127.0.0.1", maxBatch: 2, queue: 4, kvMemory: 64 << 20, kvFormat: kvcache.F32, shutdown: 5 * time.Second, apiKeys: []string{key}, metricsAuth: true}
	go func() {
		done <- serve(ctx, o, slog.New(slog.NewTextHandler(&log, nil)), func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/v1/completions", "", 401},
		{"/v1/completions", "Bearer sk-wrong", 401},
		{"/v1/completions", "Bearer " + key, 200},
		{"/health", "", 200},
		{"/metrics", "", 401},
		{"/metrics", "Bearer " + key, 200},
	} {
		method, body := "GET", ""
		if strings.HasPrefix(tc.path, "/v1/") {
			method, body = "POST", `{"prompt":"Hello","max_tokens":2}`
		}
		req, _ := http.NewRequest(method, base+tc.path, strings.NewReader(body))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s with %q: %d, want %d: %s", method, tc.path, tc.auth, resp.StatusCode, tc.want, data)
		}
	}
	// bench serve speaks to it with the key, and gets nowhere without.
	load := []string{"bench", "serve", "--url", base, "--data", "../../bench/testdata/dev.jsonl", "--conversations", "1", "--turns", "1",
		"--context-tokens", "48", "--max-tokens", "2", "--concurrency", "1"}
	if code, out, errOut := kvserve(t, append(load, "--api-key", key)...); code != 0 {
		t.Errorf("bench serve with the key: exit %d: %s%s", code, out, errOut)
	}
	if code, _, _ := kvserve(t, load...); code != 1 {
		t.Errorf("bench serve without the key: exit %d, want 1", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve returned %v", err)
	}
	if strings.Contains(log.String(), key) || !strings.Contains(log.String(), "api_keys=1") {
		t.Errorf("log: %s", log.String())
	}
}
