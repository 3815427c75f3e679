package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/tokenizer"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "[--model DIR] (--prompt TEXT | --prompt-ids 1,2,3 | --chat TEXT) [flags]",
		"Generates text and streams it to standard output. --prompt is raw text (special\n"+
			"tokens written in it are recognised); --chat wraps TEXT in the model's chat\n"+
			"template as one user turn; --prompt-ids gives token ids directly.", stderr)
	mf := addModelFlags(fs)
	prompt := fs.String("prompt", "", "raw prompt text")
	promptIDs := fs.String("prompt-ids", "", "comma-separated prompt token ids")
	chatText := fs.String("chat", "", "one user message, rendered with the chat template")
	maxTokens := fs.Int("max-tokens", 256, "most new tokens to generate (0: until a stop token or the end of the context)")
	temperature := fs.Float64("temperature", 0, "sampling temperature; 0 is greedy")
	topP := fs.Float64("top-p", 1, "nucleus sampling: keep tokens up to this cumulative probability")
	topK := fs.Int("top-k", 0, "keep only the K most likely tokens (0: all)")
	seed := fs.Uint64("seed", 0, "random seed for sampling")
	ignoreEOS := fs.Bool("ignore-eos", false, "keep generating through stop tokens")
	asJSON := fs.Bool("json", false, `print one JSON object {"prompt_ids","output_ids","text"} instead of streaming`)
	withLogits := fs.Bool("logits", false, "with --json, add last_logits: all logits at the last prompt position")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	given := 0
	for _, s := range []string{*prompt, *promptIDs, *chatText} {
		if s != "" {
			given++
		}
	}
	if given != 1 {
		return usageError{"give exactly one of --prompt, --prompt-ids or --chat"}
	}
	for what, text := range map[string]string{"--prompt": *prompt, "--chat": *chatText} {
		if err := engine.CheckText(what, text); err != nil {
			return usageError{err.Error()}
		}
	}
	if *withLogits && !*asJSON {
		return usageError{"--logits needs --json"}
	}
	if *maxTokens < 0 {
		return usageError{"--max-tokens must be ≥ 0"}
	}
	sampling := engine.Sampling{Temperature: *temperature, TopK: *topK, TopP: *topP, Seed: *seed}
	if err := sampling.Validate(); err != nil {
		return usageError{err.Error()}
	}
	b, _, closeAll, err := mf.open()
	if err != nil {
		return err
	}
	defer closeAll()

	var ids []int
	switch {
	case *promptIDs != "":
		if ids, err = parseIDs(*promptIDs, b.Tokenizer.VocabSize()); err != nil {
			return usageError{err.Error()}
		}
	case *chatText != "":
		text, err := b.ChatPrompt([]chat.Message{{Role: "user", Content: *chatText}})
		if err != nil {
			return err
		}
		ids = b.Tokenizer.Encode(text)
	default:
		ids = b.Tokenizer.Encode(*prompt)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	req := engine.Request{Prompt: ids, MaxTokens: *maxTokens, Sampling: sampling, IgnoreEOS: *ignoreEOS, KeepLogits: *withLogits}
	var emit func(int) error
	stream := tokenizer.NewStream(b.Tokenizer)
	if !*asJSON {
		emit = func(id int) error {
			_, err := io.WriteString(stdout, stream.Push(id))
			return err
		}
	}
	res, err := b.Generate(ctx, b.Net.NewCache(), req, emit)
	if err != nil {
		return err
	}
	if !*asJSON {
		_, err := fmt.Fprintln(stdout, stream.Flush())
		return err
	}
	out := struct {
		PromptIDs  []int     `json:"prompt_ids"`
		OutputIDs  []int     `json:"output_ids"`
		Text       string    `json:"text"`
		Finish     string    `json:"finish_reason"`
		LastLogits []float32 `json:"last_logits,omitempty"`
	}{ids, res.Output, b.Tokenizer.Decode(res.Output), string(res.Finish), res.LastLogits}
	if out.OutputIDs == nil {
		out.OutputIDs = []int{}
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(out)
}

func parseIDs(s string, vocab int) ([]int, error) {
	var ids []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("--prompt-ids: %q is not a token id", f)
		}
		if id < 0 || id >= vocab {
			return nil, fmt.Errorf("--prompt-ids: %d is outside the vocabulary [0, %d)", id, vocab)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
