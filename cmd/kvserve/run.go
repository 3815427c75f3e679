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
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/tokenizer"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "[--model DIR] (--prompt TEXT | --prompt-ids 1,2,3 | --chat TEXT) [flags]",
		"Generates text and streams it to standard output. --prompt is raw text (special\n"+
			"tokens written in it are recognised); --chat wraps TEXT in the model's chat\n"+
			"template as one user turn (a base model has none: give one with\n"+
			"--chat-template FILE); --prompt-ids gives token ids directly, and is the\n"+
			"way to run a folder of weights and config without tokenizer.json (with\n"+
			"--json: ids in, ids out).", stderr)
	mf := addModelFlags(fs)
	mf.addChatTemplate(fs)
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
	pressName := fs.String("press", "none", "compress the prompt's KV cache once computed (question included), e.g. keydiff, snapkv or adakv_keydiff_sinks+kivi4r32")
	pressRatio := fs.Float64("press-ratio", 0.5, "fraction of the prompt's KV the press removes")
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
	var pr *press.Press
	if *pressName != "none" && *pressName != "" {
		var err error
		if pr, err = press.Parse(*pressName, *pressRatio); err != nil {
			return usageError{"--press: " + err.Error()}
		}
	}
	b, _, closeAll, err := mf.open()
	if err != nil {
		return err
	}
	defer closeAll()

	if err := needText(b, *prompt != "", *chatText != "", *asJSON); err != nil {
		return err
	}
	var ids []int
	switch {
	case *promptIDs != "":
		if ids, err = parseIDs(*promptIDs, b.Net.Config.VocabSize); err != nil {
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
	var stream *tokenizer.Stream
	if !*asJSON {
		stream = tokenizer.NewStream(b.Tokenizer)
		emit = func(id int) error {
			_, err := io.WriteString(stdout, stream.Push(id))
			return err
		}
	}
	cache := b.Net.NewCache()
	defer cache.Release()
	var kv *kvBytes
	if pr != nil {
		if kv, err = compressPrompt(b, cache, ids, pr); err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(stderr, "press %s at %g: the prompt's KV holds %d bytes, %.3g of the %d uncompressed; %d at the peak\n", pr.Name, pr.Ratio, kv.Pressed, float64(kv.Pressed)/float64(max(1, kv.Full)), kv.Full, kv.Peak)
		}
	}
	res, err := b.Generate(ctx, cache, req, emit)
	if err != nil {
		return err
	}
	if !*asJSON {
		_, err := fmt.Fprintln(stdout, stream.Flush())
		return err
	}
	var text *string // null without a tokenizer
	if b.Tokenizer != nil {
		t := b.Tokenizer.Decode(res.Output)
		text = &t
	}
	out := struct {
		PromptIDs  []int     `json:"prompt_ids"`
		OutputIDs  []int     `json:"output_ids"`
		Text       *string   `json:"text"`
		Finish     string    `json:"finish_reason"`
		LastLogits []float32 `json:"last_logits,omitempty"`
		KV         *kvBytes  `json:"kv,omitempty"`
	}{ids, res.Output, text, string(res.Finish), res.LastLogits, kv}
	if out.OutputIDs == nil {
		out.OutputIDs = []int{}
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(out)
}

// needText checks that a model without tokenizer.json is asked for ids
// only: --prompt-ids in, --json out.
func needText(b *engine.Bundle, prompt, chatText, asJSON bool) error {
	switch {
	case prompt:
		return b.NeedTokenizer("--prompt")
	case chatText:
		return b.NeedTokenizer("--chat")
	case !asJSON:
		return b.NeedTokenizer("printing the generated text (run without --json)")
	}
	return nil
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

// kvBytes is what --press reports: the prompt's KV bytes before and after
// compression, and the most the cache held at once while the prompt was
// computed and compressed.
type kvBytes struct {
	Full    int64 `json:"full_bytes"`
	Pressed int64 `json:"pressed_bytes"`
	Peak    int64 `json:"peak_bytes"`
}

// compressPrompt computes all of ids but the last token into cache,
// recording what p needs, and compresses it (the question is in the cache:
// query-aware); Generate then computes the last token and samples. The
// prompt is computed layer by layer and every layer compressed before the
// next exists, so the cache never holds more than its compressed layers
// and one full one; a press that plans over every layer (CAKE and the
// like) computes it twice so, and one that merges across layers
// (MiniCache) compresses the whole prompt once computed
// (press.Press.Prefill).
func compressPrompt(b *engine.Bundle, cache *kvcache.Seq, ids []int, p *press.Press) (*kvBytes, error) {
	if len(ids) < 2 {
		return nil, usageError{"--press needs a prompt of at least 2 tokens"}
	}
	if len(ids) >= b.ContextLength() {
		return nil, &engine.PromptError{Msg: fmt.Sprintf("prompt has %d tokens; the model's context is %d", len(ids), b.ContextLength())}
	}
	n := len(ids) - 1
	obs := press.Observer([]*press.Press{p}, 0, n)
	pool := cache.Pool()
	pool.ResetPeak()
	_, full, err := p.Prefill(b.Net, cache, ids[:n], model.NoLogits, obs)
	if err != nil {
		return nil, err
	}
	return &kvBytes{Full: full, Pressed: cache.Bytes(), Peak: pool.PeakBytes()}, nil
}
