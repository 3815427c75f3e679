package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/engine"
)

// TestPressOverHTTP checks that the server's --press and the request's
// kv_press choose whether a prompt is compressed: a pressed prompt is
// computed whole and never kept for reuse (a repeat finds nothing cached),
// an unpressed one is reused by its repeat, and an unpressed request
// still says exactly what the engine alone says.
func TestPressOverHTTP(t *testing.T) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 20) + "What jumps?"
	ask := func(t *testing.T, ts *testServer, extra string) (string, int) {
		t.Helper()
		body := fmt.Sprintf(`{"messages":[{"role":"user","content":%s}],"max_tokens":12,"temperature":0%s}`, jsonString(text), extra)
		code, data := ts.post(t, "/v1/chat/completions", body)
		if code != 200 {
			t.Fatalf("%s: %d %s", extra, code, data)
		}
		var resp struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
			Usage usage `json:"usage"`
		}
		if err := json.Unmarshal(data, &resp); err != nil {
			t.Fatal(err)
		}
		cached := 0
		if d := resp.Usage.PromptTokensDetails; d != nil {
			cached = d.CachedTokens
		}
		return resp.Choices[0].Message.Content, cached
	}
	for _, tc := range []struct {
		name, serverPress string
		extra             string // request fields
		pressed           bool
	}{
		{"request press", "", `,"kv_press":"keydiff","kv_press_ratio":0.5`, true},
		{"server press", "snapkv", ``, true},
		{"request opts out", "snapkv", `,"kv_press":"none"`, false},
		{"no press", "", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, engine.SchedulerConfig{}, 256<<20, Config{Press: tc.serverPress, PressRatio: 0.5})
			first, _ := ask(t, ts, tc.extra)
			again, cached := ask(t, ts, tc.extra)
			if first != again {
				t.Errorf("greedy answers differ: %q then %q", first, again)
			}
			if tc.pressed && cached != 0 {
				t.Errorf("pressed prompt: the repeat found %d tokens cached, want 0", cached)
			}
			if !tc.pressed {
				if cached == 0 {
					t.Error("unpressed prompt: the repeat found nothing cached")
				}
				want, _ := reference(t, ts.b, chatPrompt(t, ts.b, text), 12, engine.Sampling{})
				if first != want {
					t.Errorf("answer %q, the engine alone says %q", first, want)
				}
			}
			if !ts.idle() {
				t.Error("the pool did not come back to empty")
			}
		})
	}
}
