package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

const ggufBF16 = "../../../shared/models/gguf/tinychat-bf16.gguf"

func needGGUF(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(ggufBF16); err != nil {
		t.Skipf("GGUF fixture absent: %v", err)
	}
}

func inspectJSONOf(t *testing.T, args ...string) inspectReport {
	t.Helper()
	code, out, errOut := kvserve(t, append([]string{"inspect"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	return r
}

func TestInspectGGUF(t *testing.T) {
	needGGUF(t)
	code, out, errOut := kvserve(t, "inspect", ggufBF16)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"architecture  llama", "layers        8", "hidden        384", "heads         6 (kv heads 2, head_dim 64)",
		"intermediate  1024", "vocab         4096", "context       4096", "rope          default, theta 10000",
		"tensors       74,", "blk.7.attn_q.weight", "[384 384]", "BF16", "pre-tokenizer llama-bpe", "3837 merges",
		`special       3: 0 "<|endoftext|>" 1 "<|im_start|>" 2 "<|im_end|>"`, `eos           2 "<|im_end|>"`, "chat template no"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Flags before or after the path; the GGUF and the folder agree.
	g := inspectJSONOf(t, "--json", ggufBF16)
	g2 := inspectJSONOf(t, ggufBF16, "--json")
	if g.TensorBytes != g2.TensorBytes || len(g.Tensors) != 74 {
		t.Fatalf("%d tensors, %d and %d bytes", len(g.Tensors), g.TensorBytes, g2.TensorBytes)
	}
	var sum int64
	for _, tn := range g.Tensors {
		sum += tn.Bytes
	}
	st, _ := os.Stat(ggufBF16)
	if sum != g.TensorBytes || sum > st.Size() || sum < st.Size()*9/10 {
		t.Errorf("tensor bytes %d (sum %d) for a file of %d", g.TensorBytes, sum, st.Size())
	}
	f := inspectJSONOf(t, "--json", "../../models/tinychat")
	if g.Config == nil || f.Config == nil || *g.Config != *f.Config {
		t.Errorf("configs differ:\n gguf   %+v\n folder %+v", g.Config, f.Config)
	}
	if g.Tokenizer == nil || g.Tokenizer.Vocab != 4096 || g.Tokenizer.ChatTemplate || len(g.Tokenizer.Special) != 3 {
		t.Errorf("gguf tokenizer %+v", g.Tokenizer)
	}
	if f.Tokenizer == nil || f.Tokenizer.Vocab != 4096 || !f.Tokenizer.ChatTemplate || len(f.Tokenizer.Special) != 3 || f.Format != "safetensors" {
		t.Errorf("folder tokenizer %+v", f.Tokenizer)
	}
	if len(f.Tensors) != 74 || f.Tensors[1].Name != "model.layers.0.input_layernorm.weight" || f.Tensors[len(f.Tensors)-1].Name != "model.norm.weight" {
		t.Errorf("folder tensors: %d, %+v …", len(f.Tensors), f.Tensors[:2])
	}
}

func TestInspectErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"inspect"}, 2, "needs a PATH"},
		{[]string{"inspect", "/nonexistent.gguf"}, 1, "no such file"},
		{[]string{"inspect", "x", "y"}, 2, `unexpected argument "y"`},
		{[]string{"inspect", "--bogus", "x"}, 2, "flag provided but not defined"},
		{[]string{"inspect", "main.go"}, 1, "not a GGUF file"},
	} {
		code, _, errOut := kvserve(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
	if code, _, errOut := kvserve(t, "inspect", "--help"); code != 0 || !strings.Contains(errOut, "Usage: kvserve inspect PATH") {
		t.Errorf("--help: exit %d, %q", code, errOut)
	}
}

// TestRunGGUF runs the GGUF conversion of tinychat end to end on the
// golden "plain" prompt.
func TestRunGGUF(t *testing.T) {
	needGGUF(t)
	data, err := os.ReadFile("../../model/testdata/tinychat/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden []struct {
		Text       string `json:"text"`
		InputIDs   []int  `json:"input_ids"`
		GreedyIDs  []int  `json:"greedy_ids"`
		GreedyText string `json:"greedy_text"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	g := golden[0]
	code, out, errOut := kvserve(t, "run", "--model", ggufBF16, "--prompt", g.Text, "--max-tokens", "32", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got runJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !equal(got.PromptIDs, g.InputIDs) || !equal(got.OutputIDs, g.GreedyIDs) || got.Text != g.GreedyText {
		t.Errorf("got %v → %v %q, want %v → %v %q", got.PromptIDs, got.OutputIDs, got.Text, g.InputIDs, g.GreedyIDs, g.GreedyText)
	}
	// No chat template in the file: --chat says so.
	code, _, errOut = kvserve(t, "run", "--model", ggufBF16, "--chat", "hi")
	if code != 1 || !strings.Contains(errOut, "no chat template") {
		t.Errorf("--chat: exit %d, %q", code, errOut)
	}
}
