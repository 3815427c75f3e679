package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/semcache/embed"
)

func benchSemcache(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench semcache", "--data FILE.jsonl [--embedder model,hash,…] [--config FILE.json] [--out F.json]",
		"Runs the response-cache protocol of ../shared/bench/README.md: stores every\n"+
			"seed row, then looks up every other row, and prints per category and kind the\n"+
			"hit rate on same, surface and paraphrase rows and the false hits on negative\n"+
			"rows — for the configuration given (--config, else the shipped default), and\n"+
			"for three policies along their threshold sweeps: one global threshold,\n"+
			"per-category thresholds, per-category thresholds with back-off. With --out,\n"+
			"writes the runs as JSON and a PNG of hit rate against false-hit rate beside it.\n"+
			"--miss-latency N also generates N seed answers with the model (greedy, up to\n"+
			"64 tokens) to compare a miss's latency with a hit's.", stderr)
	mf := addModelFlags(fs)
	data := fs.String("data", "", "labelled request set (e.g. ../shared/bench/semcache.jsonl)")
	embedders := fs.String("embedder", "model", "comma-separated embedders: model (the --model's pooled states), hash, bert:DIR, http(s)://URL[#model]")
	config := fs.String("config", "", "semcache JSON configuration (default: the shipped one)")
	load := fs.Float64("load", 0.5, "server load the threshold sees, in [0, 1] (0.5: thresholds as configured)")
	out := fs.String("out", "", "write the report as JSON here (and a PNG plot beside it)")
	missN := fs.Int("miss-latency", 0, "generate this many seed answers with the model to time a miss")
	icK := fs.Int("ic-cache", 0, "also measure IC-Cache mode with this many examples: seeds stored with the model's answers, missed rows answered plainly and with the nearest cached pairs in the prompt")
	upFrom := fs.String("upgrade-from", "", "also measure an embedder upgrade: entries stored with this embedder, then moved to the --embedder by a Procrustes map fitted on 0, 10, 25, 50 and all of them re-embedded")
	icMin := fs.Float64("ic-min-similarity", 0.5, "least similarity of an IC-Cache example")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageError{"--data is required"}
	}
	if *load < 0 || *load > 1 {
		return usageError{"--load must be in [0, 1]"}
	}
	cfg := semcache.DefaultConfig()
	if *config != "" {
		var err error
		if cfg, err = semcache.LoadConfig(*config); err != nil {
			return err
		}
	}
	rows, err := bench.ReadSemRows(*data)
	if err != nil {
		return err
	}
	var b *engine.Bundle
	specs := splitList(*embedders)
	if len(specs) == 0 {
		return usageError{"--embedder names no embedder"}
	}
	needModel := *missN > 0 || *icK > 0 || *upFrom == "model"
	for _, s := range specs {
		needModel = needModel || s == "model"
	}
	if needModel {
		var closeAll func()
		if b, _, closeAll, err = mf.open(); err != nil {
			return err
		}
		defer closeAll()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var reps []*bench.SemReport
	for _, spec := range specs {
		emb, err := embed.Open(spec, b)
		if err != nil {
			return usageError{"--embedder: " + err.Error()}
		}
		c := cfg
		c.Embedder = spec
		rep, err := bench.SemCache(ctx, rows, bench.SemOptions{Embedder: emb, Config: c, Load: *load, Progress: stderr})
		if err != nil {
			return err
		}
		rep.Data = *data
		if *upFrom != "" {
			old, err := embed.Open(*upFrom, b)
			if err != nil {
				return usageError{"--upgrade-from: " + err.Error()}
			}
			seeds := 0
			for _, r := range rows {
				if r.Kind == "seed" {
					seeds++
				}
			}
			if rep.Upgrade, err = bench.SemUpgrade(ctx, rows, c, old, *upFrom, emb, spec, []int{0, 10, 25, 50, seeds}); err != nil {
				return err
			}
		}
		if *icK > 0 {
			if rep.IC, err = bench.ICCache(ctx, b, rows, c, emb, *icK, *icMin, 32, stderr); err != nil {
				return err
			}
		}
		rep.Table(stdout)
		fmt.Fprintln(stdout)
		reps = append(reps, rep)
	}
	if *missN > 0 {
		us, err := bench.MissLatency(ctx, b, rows, *missN)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "miss (generation on %s, greedy, ≤ 64 tokens): %.0f µs mean over %d seeds\n", b.Name, us, *missN)
		for _, rep := range reps {
			if rep.Timing != nil {
				rep.Timing.GenerateMicros = us
				fmt.Fprintf(stdout, "  %s: exact hit %.3f%% of a miss, semantic hit %.3f%%\n", rep.Runs[0].Embedder,
					100*rep.Timing.ExactHitMicros/us, 100*rep.Timing.SemanticHitMicros/us)
			}
		}
	}
	if *out == "" {
		return nil
	}
	all := struct {
		Runs    []*bench.SemRun    `json:"runs"`
		Reports []*bench.SemReport `json:"reports"`
	}{}
	for _, rep := range reps {
		all.Runs = append(all.Runs, rep.Runs...)
		all.Reports = append(all.Reports, rep)
	}
	buf, err := json.MarshalIndent(all, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, append(buf, '\n'), 0o644); err != nil {
		return err
	}
	png := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".png"
	if err := bench.PlotSemCache(reps, "response cache on "+filepath.Base(*data), png); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s and %s\n", *out, png)
	return nil
}
