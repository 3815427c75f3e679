package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/kvcache/codec"
)

func benchCodec(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench codec", "[--model DIR] --data FILE.jsonl [--levels bf16,int4,cg1,cg2] [flags]",
		"Round-trips each record's context KV through the wire codec (kvcache/codec)\n"+
			"and answers the first turn from the decoded cache: the context is\n"+
			"prefilled, encoded in --chunk-tokens chunks, decoded into a fresh cache, and\n"+
			"the question is computed on top (greedy, 40 tokens, exact match). Prints\n"+
			"bytes against bf16, accuracy against the cache as computed (\"none\") and\n"+
			"kvserve's own 4-bit blocks (\"pool-int4\"), and coding speed.", stderr)
	mf := addModelFlags(fs)
	data := fs.String("data", "", "JSONL task set (e.g. bench/testdata/dev.jsonl)")
	tasks := fs.String("tasks", "", "comma-separated tasks to run (default: all)")
	lengths := fs.String("lengths", "", "comma-separated target lengths, e.g. 1000,2000 (default: all)")
	perCell := fs.Int("per-cell", 2, "records per task × length (0: all)")
	levelList := fs.String("levels", "bf16,int8,int4,cg1,cg2,cg3,cg4", "comma-separated codec levels")
	chunk := fs.Int("chunk-tokens", 256, "tokens per encoded chunk (the store's chunk)")
	out := fs.String("out", "", "write the rows as JSON to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageError{"--data is required"}
	}
	if *chunk < 1 {
		return usageError{"--chunk-tokens must be ≥ 1"}
	}
	var levels []codec.Level
	for _, s := range splitList(*levelList) {
		l, err := codec.ParseLevel(s)
		if err != nil {
			return usageError{"--levels: " + err.Error()}
		}
		levels = append(levels, l)
	}
	recs, err := selectRecords(*data, *tasks, *lengths, *perCell)
	if err != nil {
		return err
	}
	b, _, closeAll, err := mf.open()
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rows, err := bench.CodecAccuracy(ctx, b, recs, levels, *chunk, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s, %d records of %s, turn 1, chunks of %d tokens\n\n", b.Name, len(recs), *data, *chunk)
	bench.CodecTable(stdout, rows)
	if *out != "" {
		buf, err := json.MarshalIndent(rows, "", " ")
		if err != nil {
			return err
		}
		return os.WriteFile(*out, append(buf, '\n'), 0o644)
	}
	return nil
}
