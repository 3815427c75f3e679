package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/codec"
)

func benchTiers(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench tiers", "[--model DIR] --data FILE.jsonl [--kv-redis URL] [--levels cg1,bf16] [flags]",
		"Times the first token of a record's second turn — its long shared context\n"+
			"asked another question — when the context is recomputed, found in the\n"+
			"prefix tree of the process that answered turn 1, or loaded by a fresh\n"+
			"process (new pool, new store) from the host-memory tier, the disk tier and,\n"+
			"with --kv-redis, Redis, where the first process wrote turn 1 in each codec\n"+
			"level. Prints a table with the speed-up over recomputing and the bytes\n"+
			"stored per token.", stderr)
	mf := addModelFlags(fs)
	data := fs.String("data", "", "JSONL task set (e.g. bench/testdata/dev.jsonl)")
	task := fs.String("task", "niah_multikey", "the record's task")
	length := fs.Int("length", 3500, "the record's target context length")
	index := fs.Int("record", 0, "which matching record (0: the first)")
	redisURL := fs.String("kv-redis", "", "Redis URL for the Redis rows, e.g. redis://127.0.0.1:6379/0 (none: no Redis rows)")
	levelList := fs.String("levels", "cg1,bf16", "comma-separated codec levels of the tier rows")
	chunk := fs.Int("kv-chunk", 256, "tokens per stored chunk")
	repeat := fs.Int("repeat", 3, "fresh readers per row; the median is reported")
	kvFormat := fs.String("kv-format", "f32", "the pool's format: f32 or bf16")
	out := fs.String("out", "", "write the rows as JSON to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageError{"--data is required"}
	}
	format, err := kvcache.ParseFormat(*kvFormat)
	if err != nil {
		return usageError{"--kv-format: " + err.Error()}
	}
	var levels []codec.Level
	for _, s := range splitList(*levelList) {
		l, err := codec.ParseLevel(s)
		if err != nil {
			return usageError{"--levels: " + err.Error()}
		}
		levels = append(levels, l)
	}
	recs, err := bench.ReadRecords(*data)
	if err != nil {
		return err
	}
	recs = bench.Filter(recs, []string{*task}, []int{*length}, 0)
	if *index < 0 || *index >= len(recs) {
		return fmt.Errorf("%s has %d records of task %s at length %d; --record %d is not one", *data, len(recs), *task, *length, *index)
	}
	r := &recs[*index]
	if len(r.Turns) < 2 {
		return fmt.Errorf("record %s has one turn; a second is needed", r.ID)
	}
	b, _, closeAll, err := mf.open()
	if err != nil {
		return err
	}
	defer closeAll()
	var ids [2][]int
	for k := range ids {
		text, err := b.ChatPrompt(bench.TurnMessages(r, k+1))
		if err != nil {
			return err
		}
		ids[k] = b.Tokenizer.Encode(text)
		if len(ids[k]) >= b.ContextLength() {
			return fmt.Errorf("record %s turn %d has %d tokens, more than the model's %d; choose another --record", r.ID, k+1, len(ids[k]), b.ContextLength())
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rows, err := bench.TierTTFT(ctx, b, ids[0], ids[1], bench.TierOptions{
		Levels: levels, RedisURL: *redisURL, ChunkTokens: *chunk, Format: format, Repeat: *repeat, Progress: stderr})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s, record %s: turn 1 %d tokens, turn 2 %d tokens, chunks of %d, pool %s, median of %d\n\n", b.Name, r.ID, len(ids[0]), len(ids[1]), *chunk, format, *repeat)
	bench.TierTable(stdout, rows)
	if *out != "" {
		buf, err := json.MarshalIndent(rows, "", " ")
		if err != nil {
			return err
		}
		return os.WriteFile(*out, append(buf, '\n'), 0o644)
	}
	return nil
}
