package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
)

// modelFlags are the flags every command that runs a model shares.
type modelFlags struct {
	dir     *string
	threads *int
}

func addModelFlags(fs *flag.FlagSet) modelFlags {
	return modelFlags{
		dir:     fs.String("model", "", "Hugging Face model folder or .gguf file (default: the bundled tinychat)"),
		threads: fs.Int("threads", 0, "worker threads (0: one per CPU)"),
	}
}

// open starts a worker pool and loads the model; close releases both.
func (m modelFlags) open() (b *engine.Bundle, pool *compute.Pool, closeAll func(), err error) {
	pool = compute.NewPool(*m.threads)
	b, err = engine.Open(*m.dir, pool)
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
