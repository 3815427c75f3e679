package main

import (
	"flag"
	"fmt"
	"github.com/kvserve/kvserve/bench"
	"strconv"
	"strings"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
)

// modelFlags are the flags every command that runs a model shares.
type modelFlags struct {
	dir          *string
	threads      *int
	numerics     *string
	chatTemplate *string // set by addChatTemplate, for commands that chat
}

// chatTemplateUsage is the help of --chat-template.
const chatTemplateUsage = "Jinja chat template file replacing the model's own, or giving one to a base model that ships none (only chat needs a template)"

// addChatTemplate adds --chat-template, for the commands that chat.
func (m *modelFlags) addChatTemplate(fs *flag.FlagSet) {
	m.chatTemplate = fs.String("chat-template", "", chatTemplateUsage)
}

// options returns what the flags ask of engine.OpenWith.
func (m modelFlags) options() engine.Options {
	var o engine.Options
	if m.chatTemplate != nil {
		o.ChatTemplateFile = *m.chatTemplate
	}
	o.Numerics = *m.numerics
	return o
}

func addModelFlags(fs *flag.FlagSet) modelFlags {
	return modelFlags{
		dir:      fs.String("model", "", "Hugging Face model folder or .gguf file (default: the bundled tinychat)"),
		threads:  fs.Int("threads", 0, "worker threads (0: one per CPU)"),
		numerics: fs.String("numerics", "auto", numericsUsage),
	}
}

// numericsUsage is the help of --numerics; README's "Numerics" section
// gives the measured reasons for the default.
const numericsUsage = "how matrix products treat activations. exact: float32, weights widened exactly (transformers' fp32 numerics; the golden tests). " +
	"fast: rounded as llama.cpp does, to int8 per block of 32 against Q8_0/Q4_0/Q4_K/Q6_K weights and to bf16 against BF16 weights, " +
	"for integer and bf16 dot-product instructions. auto: fast for .gguf files, exact for Hugging Face folders"

// open starts a worker pool and loads the model; close releases both.
func (m modelFlags) open() (b *engine.Bundle, pool *compute.Pool, closeAll func(), err error) {
	pool = compute.NewPool(*m.threads)
	b, err = engine.OpenWith(*m.dir, pool, m.options())
	if err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	return b, pool, func() { b.Close(); pool.Close() }, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// positiveInts parses a comma-separated list of positive numbers for flag.
func positiveInts(flag, s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, usageError{fmt.Sprintf("%s: %q is not a positive number", flag, f)}
		}
		out = append(out, n)
	}
	return out, nil
}

// selectRecords reads a JSONL task set and keeps the records of the
// comma-separated tasks and lengths (all when empty), at most perCell per
// task × length (0: all); none matching is an error that names the filters.
func selectRecords(data, tasks, lengths string, perCell int) ([]bench.Record, error) {
	lens, err := positiveInts("--lengths", lengths)
	if err != nil {
		return nil, err
	}
	recs, err := bench.ReadRecords(data)
	if err != nil {
		return nil, err
	}
	recs = bench.Filter(recs, splitList(tasks), lens, perCell)
	if len(recs) == 0 {
		return nil, fmt.Errorf("no records of %s match --tasks %q --lengths %q", data, tasks, lengths)
	}
	return recs, nil
}
