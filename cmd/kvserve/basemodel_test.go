package main

import (
	"encoding/json"
	"github.com/kvserve/kvserve/internal/fixture"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// baseModelDir is the bundled tinychat without its chat template.
func baseModelDir(t *testing.T) string { return fixture.BaseModel(t) }

type tinyGolden struct {
	Text       string `json:"text"`
	InputIDs   []int  `json:"input_ids"`
	GreedyIDs  []int  `json:"greedy_ids"`
	GreedyText string `json:"greedy_text"`
}

func readTinyGolden(t *testing.T) tinyGolden {
	t.Helper()
	data, err := os.ReadFile("../../model/testdata/tinychat/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden []tinyGolden
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	return golden[0]
}

func joinIDs(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

// TestBaseModel runs a folder without a chat template: raw text, token ids
// and bench perf work and give transformers' greedy output; chat fails
// naming --chat-template, and works once one is given.
func TestBaseModel(t *testing.T) {
	dir := baseModelDir(t)
	g := readTinyGolden(t)
	template := "../../models/tinychat/chat_template.jinja"
	question := "What is the special magic number?"
	_, chatOut, chatErr := kvserve(t, "run", "--chat", question, "--max-tokens", "8", "--json")
	if chatOut == "" {
		t.Fatalf("bundled tinychat cannot chat: %s", chatErr)
	}
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		wantOut    string // exact stdout, when set
		wantIDs    []int  // output_ids of --json, when set
		wantStderr []string
	}{
		{"prompt", []string{"--prompt", g.Text, "--max-tokens", "32", "--json"}, 0, "", g.GreedyIDs, nil},
		{"prompt streamed", []string{"--prompt", g.Text, "--max-tokens", "32"}, 0, g.GreedyText + "\n", nil, nil},
		{"prompt ids", []string{"--prompt-ids", joinIDs(g.InputIDs), "--max-tokens", "32", "--json"}, 0, "", g.GreedyIDs, nil},
		{"chat without template", []string{"--chat", question}, 1, "", nil, []string{"has no chat template", "--chat-template FILE", filepath.Base(dir)}},
		{"chat with template", []string{"--chat", question, "--max-tokens", "8", "--json", "--chat-template", template}, 0, chatOut, nil, nil},
		{"missing template file", []string{"--chat", question, "--chat-template", filepath.Join(dir, "nosuch.jinja")}, 1, "", nil, []string{"chat template file", "nosuch.jinja"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := kvserve(t, append([]string{"run", "--model", dir}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			if tc.wantOut != "" && out != tc.wantOut {
				t.Errorf("stdout %q, want %q", out, tc.wantOut)
			}
			if tc.wantIDs != nil {
				var got runJSON
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				if !equal(got.OutputIDs, tc.wantIDs) {
					t.Errorf("output ids %v, want %v", got.OutputIDs, tc.wantIDs)
				}
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
	t.Run("bench perf", func(t *testing.T) {
		code, out, errOut := kvserve(t, "bench", "perf", "--model", dir, "--prompt-tokens", "16", "--gen-tokens", "4", "--repeats", "1", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var rep struct {
			Prefill []struct {
				Tokens int `json:"tokens"`
			} `json:"prefill"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Prefill) != 1 || rep.Prefill[0].Tokens != 16 {
			t.Errorf("bench perf: %v %s", err, out)
		}
	})
	t.Run("bench accuracy", func(t *testing.T) {
		code, _, errOut := kvserve(t, "bench", "accuracy", "--model", dir, "--data", "../../bench/testdata/dev.jsonl", "--per-cell", "1", "--turns", "1")
		if code != 1 || !strings.Contains(errOut, "--chat-template FILE") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}

// archGolden is one fixture of model/testdata/archs/golden.json:
// transformers' greedy continuation of random ids on a random model.
type archGolden struct {
	Name      string `json:"name"`
	InputIDs  []int  `json:"input_ids"`
	GreedyIDs []int  `json:"greedy_ids"`
}

// TestWeightsOnly runs folders of weights and config without tokenizer.json
// on ids, against transformers' greedy ids, and checks that what needs
// text says so.
func TestWeightsOnly(t *testing.T) {
	const archs = "../../model/testdata/archs"
	data, err := os.ReadFile(filepath.Join(archs, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden []archGolden
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	for _, g := range golden {
		t.Run(g.Name, func(t *testing.T) {
			dir := filepath.Join(archs, g.Name)
			if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
				t.Fatalf("%s has a tokenizer.json; this test wants a weights-only folder", dir)
			}
			code, out, errOut := kvserve(t, "run", "--model", dir, "--prompt-ids", joinIDs(g.InputIDs), "--max-tokens", strconv.Itoa(len(g.GreedyIDs)), "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var got struct {
				PromptIDs []int   `json:"prompt_ids"`
				OutputIDs []int   `json:"output_ids"`
				Text      *string `json:"text"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if !equal(got.OutputIDs, g.GreedyIDs) || !equal(got.PromptIDs, g.InputIDs) {
				t.Errorf("output ids %v, want %v", got.OutputIDs, g.GreedyIDs)
			}
			if got.Text != nil {
				t.Errorf("text %q without a tokenizer; want null", *got.Text)
			}
		})
	}
	dir := filepath.Join(archs, golden[0].Name)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"prompt", []string{"--prompt", "hello", "--json"}, "--prompt"},
		{"chat", []string{"--chat", "hello", "--json"}, "--chat"},
		{"text output", []string{"--prompt-ids", "1,2,3"}, "without --json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := kvserve(t, append([]string{"run", "--model", dir}, tc.args...)...)
			if code != 1 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range []string{"no tokenizer.json", tc.want, "--prompt-ids", "--json"} {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
	if code, _, errOut := kvserve(t, "run", "--model", dir, "--prompt-ids", "1,2", "--json", "--chat-template", "../../models/tinychat/chat_template.jinja"); code != 1 || !strings.Contains(errOut, "no tokenizer.json") {
		t.Errorf("--chat-template without a tokenizer: exit %d: %s", code, errOut)
	}
}
