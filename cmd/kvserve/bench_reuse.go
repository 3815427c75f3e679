package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
)

// reuseFlags are the flags of `bench accuracy --reuse`.
type reuseFlags struct {
	methods string
	ratios  string
	memory  int64
}

func addReuseFlags(fs *flag.FlagSet) *reuseFlags {
	r := &reuseFlags{}
	fs.StringVar(&r.methods, "reuse", "", "comma-separated ways to reuse the records' cached documents ("+strings.Join(bench.ReuseMethods, ", ")+
		"): each record's documents come from a chunk cache, warmed before the record is timed; needs records with documents (../shared/bench/rag.jsonl). With --out also writes a PNG of accuracy against TTFT beside it")
	fs.StringVar(&r.ratios, "recompute-ratio", "0.15", "comma-separated shares of the reused tokens that cacheblend, cacheblend-deviation and cachecraft recompute, in (0, 1]")
	fs.Int64Var(&r.memory, "chunk-memory", 768<<20, "bytes of KV the chunk cache and the records' caches may hold together (least recently used documents are evicted)")
	return r
}

// run is `bench accuracy --reuse`.
func (r *reuseFlags) run(ctx context.Context, b *engine.Bundle, recs []bench.Record, data, out string, format kvcache.Format, stdout, stderr io.Writer) error {
	var configs []bench.ReuseConfig
	for _, m := range splitList(r.methods) {
		if !slices.Contains(bench.ReuseMethods, m) {
			return usageError{fmt.Sprintf("--reuse: unknown method %q (want %s)", m, strings.Join(bench.ReuseMethods, ", "))}
		}
		if m != "cacheblend" && m != "cacheblend-deviation" && m != "cachecraft" {
			configs = append(configs, bench.ReuseConfig{Method: m})
			continue
		}
		for _, rs := range splitList(r.ratios) {
			ratio, err := strconv.ParseFloat(rs, 64)
			if err != nil || ratio <= 0 || ratio > 1 {
				return usageError{fmt.Sprintf("--recompute-ratio: %q is not a share in (0, 1]", rs)}
			}
			configs = append(configs, bench.ReuseConfig{Method: m, Ratio: ratio})
		}
	}
	runs, err := bench.Reuse(ctx, b, recs, configs, r.memory, bench.AccuracyOptions{Progress: stderr, Format: format})
	if err != nil {
		return err
	}
	bench.ReuseTable(stdout, runs)
	if out == "" {
		return nil
	}
	rep := bench.Report{Model: b.Name, Data: data, Runs: runs}
	buf, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(buf, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", out)
	png := strings.TrimSuffix(out, filepath.Ext(out)) + ".png"
	if err := bench.PlotReuse(&rep, fmt.Sprintf("%s on %s: reusing cached documents", b.Name, filepath.Base(data)), png); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", png)
	return nil
}
