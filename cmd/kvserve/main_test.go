package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
)

// kvserve runs the CLI in-process and returns its exit code and output.
func kvserve(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runMain(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

type runJSON struct {
	PromptIDs  []int     `json:"prompt_ids"`
	OutputIDs  []int     `json:"output_ids"`
	Text       string    `json:"text"`
	LastLogits []float32 `json:"last_logits"`
}

// TestRunGolden checks the CLI end to end against transformers' golden
// output for tinychat's "plain" prompt: token ids, greedy text and logits.
func TestRunGolden(t *testing.T) {
	data, err := os.ReadFile("../../model/testdata/tinychat/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden []struct {
		Name       string    `json:"name"`
		Text       string    `json:"text"`
		InputIDs   []int     `json:"input_ids"`
		LastLogits []float32 `json:"last_logits"`
		GreedyIDs  []int     `json:"greedy_ids"`
		GreedyText string    `json:"greedy_text"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	g := golden[0]
	code, out, errOut := kvserve(t, "run", "--prompt", g.Text, "--max-tokens", "32", "--json", "--logits")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got runJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	if !equal(got.PromptIDs, g.InputIDs) {
		t.Errorf("prompt ids %v, want %v", got.PromptIDs, g.InputIDs)
	}
	if !equal(got.OutputIDs, g.GreedyIDs) || got.Text != g.GreedyText {
		t.Errorf("output %v %q, want %v %q", got.OutputIDs, got.Text, g.GreedyIDs, g.GreedyText)
	}
	worst := 0.0
	for i, v := range g.LastLogits {
		worst = max(worst, float64(abs(got.LastLogits[i]-v)))
	}
	if worst >= 2e-3 {
		t.Errorf("last logits differ by %.5f", worst)
	}

	// The same prompt as ids, streamed: the same text.
	ids := make([]string, len(g.InputIDs))
	for i, id := range g.InputIDs {
		ids[i] = strconv.Itoa(id)
	}
	code, out, errOut = kvserve(t, "run", "--prompt-ids", strings.Join(ids, ","), "--max-tokens", "32")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != g.GreedyText+"\n" {
		t.Errorf("streamed %q, want %q", out, g.GreedyText+"\n")
	}
}

func TestRunChatAndSampling(t *testing.T) {
	args := []string{"run", "--chat", "What is the special magic number?", "--max-tokens", "12", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "7", "--json"}
	code1, out1, err1 := kvserve(t, args...)
	code2, out2, _ := kvserve(t, args...)
	if code1 != 0 || code2 != 0 {
		t.Fatalf("exit %d: %s", code1, err1)
	}
	if out1 != out2 {
		t.Errorf("same seed, different output:\n%s\n%s", out1, out2)
	}
	var got runJSON
	json.Unmarshal([]byte(out1), &got)
	if got.PromptIDs[0] != 1 { // <|im_start|> of the chat template
		t.Errorf("chat prompt starts with %v", got.PromptIDs[:3])
	}
}

// TestRunPress compresses a chat prompt with --press and checks the bytes
// it reports: about half the prompt's KV at ratio 0.5, and a greedy answer.
// A press that compresses layer by layer peaks at no more than its final
// cache and one full layer (+10 %), CAKE (two passes) too; MiniCache,
// which merges across layers, holds the whole prompt at its peak.
func TestRunPress(t *testing.T) {
	const layers = 8 // tinychat's
	for _, tc := range []struct {
		press   string
		bounded bool
	}{{"keydiff", true}, {"snapkv", true}, {"cake", true}, {"minicache", false}} {
		t.Run(tc.press, func(t *testing.T) {
			code, out, errOut := kvserve(t, "run", "--chat", strings.Repeat("Go has goroutines and channels. ", 20)+"What does Go have?",
				"--max-tokens", "8", "--press", tc.press, "--press-ratio", "0.5", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var got struct {
				OutputIDs []int `json:"output_ids"`
				KV        *struct {
					Full    int64 `json:"full_bytes"`
					Pressed int64 `json:"pressed_bytes"`
					Peak    int64 `json:"peak_bytes"`
				} `json:"kv"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			kv := got.KV
			if kv == nil || kv.Full == 0 || kv.Pressed >= kv.Full || tc.bounded && (kv.Pressed > kv.Full*6/10 || kv.Pressed < kv.Full*4/10) {
				t.Fatalf("kv %+v: want about half the full bytes", kv)
			}
			bound := 1.1 * float64(kv.Pressed+kv.Full/layers)
			if tc.bounded && float64(kv.Peak) > bound {
				t.Errorf("kv %+v: peak over the pressed bytes + one layer + 10 %% (%.0f)", kv, bound)
			}
			if !tc.bounded && kv.Peak < kv.Full {
				t.Errorf("kv %+v: MiniCache's peak is the full prompt", kv)
			}
			if len(got.OutputIDs) == 0 {
				t.Error("no answer")
			}
		})
	}
}

// TestBadInput checks that bad input gives exit code 1 or 2 and one line.
func TestBadInput(t *testing.T) {
	long := strings.Repeat("func main() { fmt.Println(x) }\n", 700) // > 4096 tokens
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures":["BertModel"]}`), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"too long", []string{"run", "--prompt", long}, 1, "the model's context is 4096"},
		{"invalid utf-8", []string{"run", "--prompt", "caf\xe9 \xff\xfe", "--max-tokens", "2"}, 2, "not valid UTF-8: byte 0xe9 at offset 3"},
		{"no prompt", []string{"run"}, 2, "exactly one of"},
		{"two prompts", []string{"run", "--prompt", "a", "--chat", "b"}, 2, "exactly one of"},
		{"bad id", []string{"run", "--prompt-ids", "1,x"}, 2, `"x" is not a token id`},
		{"id out of range", []string{"run", "--prompt-ids", "99999"}, 2, "outside the vocabulary"},
		{"bad flag", []string{"run", "--tempreature", "1"}, 2, "flag provided but not defined"},
		{"bad temperature", []string{"run", "--prompt", "a", "--temperature", "-1"}, 2, "temperature"},
		{"missing model", []string{"run", "--model", "/nonexistent", "--prompt", "a"}, 1, "no such file"},
		{"unknown architecture", []string{"run", "--model", dir, "--prompt", "a"}, 1, `unsupported architecture "BertModel"`},
		{"unknown command", []string{"fly"}, 2, `unknown command "fly"`},
		{"bench without data", []string{"bench", "accuracy"}, 2, "--data is required"},
		{"bench bad data", []string{"bench", "accuracy", "--data", "/nonexistent.jsonl"}, 1, "no such file"},
		{"bench bad head file", []string{"bench", "accuracy", "--data", "/nonexistent.jsonl", "--press", "duo_attention", "--duo-heads", "/nonexistent.json"}, 2, "--duo-heads"},
		{"unknown press", []string{"run", "--prompt", "a b c", "--press", "nosuch"}, 2, `unknown press "nosuch"`},
		{"press ratio out of range", []string{"run", "--prompt", "a b c", "--press", "keydiff", "--press-ratio", "1"}, 2, "outside [0, 1)"},
		{"too long to press", []string{"run", "--prompt", long, "--press", "keydiff"}, 1, "the model's context is 4096"},
		{"inspect a non-model folder", []string{"inspect", t.TempDir()}, 1, "is not a model folder: it has neither config.json nor *.safetensors"},
		{"bench serve, no server", []string{"bench", "serve", "--data", "../../bench/testdata/dev.jsonl", "--url", "http://127.0.0.1:1", "--conversations", "1"}, 1, "cannot reach a server at http://127.0.0.1:1"},
		{"log level", []string{"serve", "--log-level", "loud"}, 2, `--log-level "loud"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := kvserve(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if tc.code == 1 && strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
				t.Errorf("error is not one line: %q", errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not mention %q", errOut, tc.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"bench", "--help"}, {"bench", "accuracy", "--help"}, {"bench", "perf", "--help"}} {
		code, out, errOut := kvserve(t, args...)
		if code != 0 || !strings.Contains(out+errOut, "Usage") {
			t.Errorf("%v: exit %d, output %q", args, code, out+errOut)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestVersionAndHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"version"}, []string{"kvserve ", "commit ", "go1.", "kernels "}},
		{[]string{"--version"}, []string{"kvserve ", "kernels "}},
		{[]string{"--help"}, []string{"version", "profile-heads", "Benchmarks", "accuracy", "perf", "serve", "compare", "plot", "summary", "tinychat"}},
	}
	for _, tt := range tests {
		code, out, errOut := kvserve(t, tt.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d, %s", tt.args, code, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
}

// TestChatSession: answers stream over two turns, /press compresses,
// /reset forgets, "// text" is a message, not a command.
func TestChatSession(t *testing.T) {
	b := bundled(t)
	var out, info strings.Builder
	c := &chatSession{b: b, req: engine.Request{MaxTokens: 12}, out: &out, info: &info}
	defer c.reset()
	in := strings.Join([]string{
		"// One of the special magic numbers for castle is: 4322492. What is the special magic number for castle mentioned in the provided text?",
		"What is the special magic number for castle mentioned in the provided text?",
		"/press keydiff 0.25",
		"/press nosuch",
		"/reset",
		"/exit",
		"never read",
	}, "\n")
	if err := c.loop(context.Background(), strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "4322492"); got != 2 {
		t.Errorf("answers %q: want the number twice", out.String())
	}
	for _, w := range []string{"press keydiff at 0.25", `unknown press "nosuch"`, "conversation reset"} {
		if !strings.Contains(info.String(), w) {
			t.Errorf("notes %q lack %q", info.String(), w)
		}
	}
	if c.msgs != nil || c.cache != nil {
		t.Errorf("after /reset: %d messages, cache %v", len(c.msgs), c.cache)
	}
}

// bundled opens the bundled tinychat.
func bundled(t *testing.T) *engine.Bundle {
	t.Helper()
	pool := compute.NewPool(0)
	b, err := engine.Open("", pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); pool.Close() })
	return b
}
