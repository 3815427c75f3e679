package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/model"
)

// logSoftmax returns log-softmax of a row, in float64.
func logSoftmax(row []float32) []float64 {
	hi := math.Inf(-1)
	for _, v := range row {
		hi = math.Max(hi, float64(v))
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - hi)
	}
	out := make([]float64, len(row))
	for i, v := range row {
		out[i] = float64(v) - hi - math.Log(sum)
	}
	return out
}

type legacyChoice struct {
	Text     string `json:"text"`
	Logprobs struct {
		Tokens        []string             `json:"tokens"`
		TokenLogprobs []*float64           `json:"token_logprobs"`
		TopLogprobs   []map[string]float64 `json:"top_logprobs"`
		TextOffset    []int                `json:"text_offset"`
	} `json:"logprobs"`
}

// TestLogprobsMatchRunLogits checks the first generated token's logprob
// and alternatives against log-softmax of the logits `kvserve run
// --logits` prints (Bundle.Generate with KeepLogits), and the prompt's
// logprobs (echo) against a forward pass that returns every position.
func TestLogprobsMatchRunLogits(t *testing.T) {
	ts := start(t, engine.SchedulerConfig{MaxBatch: 2})
	b := ts.b
	text := "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println("
	prompt := b.Tokenizer.Encode(text)
	res, err := b.Generate(context.Background(), b.Net.NewCache(), engine.Request{Prompt: prompt, MaxTokens: 1, KeepLogits: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := logSoftmax(res.LastLogits)
	all, err := b.Net.Forward(b.Net.NewCache(), prompt, model.AllLogits)
	if err != nil {
		t.Fatal(err)
	}
	v := b.Net.Config.VocabSize
	const tol = 1e-4

	code, body := ts.post(t, "/v1/completions", fmt.Sprintf(`{"prompt":%s,"max_tokens":3,"temperature":0,"logprobs":5,"echo":true}`, jsonString(text)))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var resp struct{ Choices []legacyChoice }
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	lp := resp.Choices[0].Logprobs
	if !strings.HasPrefix(resp.Choices[0].Text, text) || len(lp.Tokens) != len(prompt)+3 || lp.TokenLogprobs[0] != nil || lp.TopLogprobs[0] != nil {
		t.Fatalf("echo: text %q, %d tokens for a %d-token prompt", resp.Choices[0].Text, len(lp.Tokens), len(prompt))
	}
	for i := 1; i < len(prompt); i++ { // prompt token i given the ones before
		row := logSoftmax(all[(i-1)*v : i*v])
		if got := *lp.TokenLogprobs[i]; math.Abs(got-row[prompt[i]]) > tol {
			t.Errorf("prompt token %d: logprob %v, want %v", i, got, row[prompt[i]])
		}
		if len(lp.TopLogprobs[i]) == 0 {
			t.Errorf("prompt token %d has no alternatives", i)
		}
	}
	first := len(prompt)
	id := res.Output[0]
	if got := *lp.TokenLogprobs[first]; math.Abs(got-want[id]) > tol {
		t.Errorf("first token: logprob %v, want %v", got, want[id])
	}
	if lp.TextOffset[first] != len(text) {
		t.Errorf("first generated token at offset %d, want %d", lp.TextOffset[first], len(text))
	}
	top := lp.TopLogprobs[first]
	if len(top) != 5 {
		t.Fatalf("%d alternatives, want 5", len(top))
	}
	for tok, got := range top {
		ids := b.Tokenizer.Encode(tok)
		if len(ids) == 1 && math.Abs(got-want[ids[0]]) > tol {
			t.Errorf("alternative %q: %v, want %v", tok, got, want[ids[0]])
		}
	}

	// Chat: the same values in the chat shape, whole and streamed.
	chatBody := `{"messages":[{"role":"user","content":"What does fmt.Println do?"}],"max_tokens":8,"temperature":0,"logprobs":true,"top_logprobs":3`
	cp := chatPrompt(t, b, "What does fmt.Println do?")
	cres, err := b.Generate(context.Background(), b.Net.NewCache(), engine.Request{Prompt: cp, MaxTokens: 1, KeepLogits: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cwant := logSoftmax(cres.LastLogits)
	code, body = ts.post(t, "/v1/chat/completions", chatBody+`}`)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var cr struct {
		Choices []struct {
			Message  struct{ Content string }
			Logprobs chatLogprobs
		}
	}
	if err := json.Unmarshal(body, &cr); err != nil {
		t.Fatal(err)
	}
	content := cr.Choices[0].Logprobs.Content
	var joined []byte
	for _, c := range content {
		for _, x := range c.Bytes {
			joined = append(joined, byte(x))
		}
		if len(c.TopLogprobs) != 3 || c.TopLogprobs[0].Logprob < c.Logprob-tol {
			t.Errorf("token %q: alternatives %+v", c.Token, c.TopLogprobs)
		}
	}
	if string(joined) != cr.Choices[0].Message.Content {
		t.Errorf("the tokens' bytes spell %q, the message is %q", joined, cr.Choices[0].Message.Content)
	}
	if got := content[0].Logprob; math.Abs(got-cwant[cres.Output[0]]) > tol {
		t.Errorf("chat first token: %v, want %v", got, cwant[cres.Output[0]])
	}
	// Streamed: the chunks' logprobs add up to the same list.
	resp2, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody+`,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var streamedLP []chatTokenLogprob
	for _, ev := range events(t, resp2.Body) {
		if ev == "[DONE]" {
			break
		}
		var c struct {
			Choices []struct {
				Logprobs *chatLogprobs `json:"logprobs"`
			}
		}
		json.Unmarshal([]byte(ev), &c)
		if len(c.Choices) == 1 && c.Choices[0].Logprobs != nil {
			streamedLP = append(streamedLP, c.Choices[0].Logprobs.Content...)
		}
	}
	if len(streamedLP) != len(content) {
		t.Fatalf("streamed %d token logprobs, whole %d", len(streamedLP), len(content))
	}
	for i := range content {
		if streamedLP[i].Token != content[i].Token || math.Abs(streamedLP[i].Logprob-content[i].Logprob) > tol {
			t.Errorf("token %d: streamed %+v, whole %+v", i, streamedLP[i], content[i])
		}
	}
}
