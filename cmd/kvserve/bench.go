package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/press"
)

func cmdBench(args []string, stdout, stderr io.Writer) error {
	subs := map[string]func([]string, io.Writer, io.Writer) error{
		"accuracy": benchAccuracy,
		"perf":     benchPerf,
		"serve":    benchServe,
		"compare":  benchCompare,
		"plot":     benchPlot,
		"summary":  benchSummary,
		"codec":    benchCodec,
		"tiers":    benchTiers,
		"semcache": benchSemcache,
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stdout, "Usage: kvserve bench (accuracy | perf | serve | compare | plot | summary | codec | tiers) [flags]\n\n"+
			"  accuracy  long-context task accuracy (greedy, exact match) on a JSONL task set\n"+
			"  perf      prefill and decode speed, TTFT, memory\n"+
			"  serve     load a running server: multi-turn shared-context chats, TTFT, ITL, throughput\n"+
			"  compare   compare an accuracy result with a baseline table and reference answers\n"+
			"  plot      draw accuracy against KV bytes from an accuracy result (PNG)\n"+
			"  summary   one line per method family: best accuracy within each byte budget\n"+
			"  codec     accuracy and bytes after a round trip through the KV wire codec\n"+
			"  tiers     TTFT of a shared-context turn loaded from memory, disk, Redis vs recomputed\n"+
			"  semcache  response-cache hit and false-hit rates on a labelled request set")
		if len(args) == 0 {
			return usageError{"bench needs a subcommand"}
		}
		return nil
	}
	sub, ok := subs[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown bench %q (want accuracy, perf, serve, compare, plot, summary, codec or tiers)", args[0])}
	}
	return sub(args[1:], stdout, stderr)
}

func benchAccuracy(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench accuracy", "[--model DIR] --data FILE.jsonl [flags]",
		"Asks each record's questions over its long context (chat template, earlier\n"+
			"turns with their reference answers), greedy, at most 40 new tokens, and\n"+
			"scores exact matches after trimming white space. Prints a task × length ×\n"+
			"turn table; a progress bar goes to stderr. Prompts longer than the model's\n"+
			"context are reported as skipped, never cut.", stderr)
	mf := addModelFlags(fs)
	mf.addChatTemplate(fs)
	data := fs.String("data", "", "JSONL task set (e.g. ../shared/bench/dev.jsonl)")
	tasks := fs.String("tasks", "", "comma-separated tasks to run (default: all)")
	lengths := fs.String("lengths", "", "comma-separated target lengths, e.g. 1000,2000 (default: all)")
	perCell := fs.Int("per-cell", 0, "records per task × length (0: all)")
	turns := fs.Int("turns", 0, "turns per record (0: all)")
	out := fs.String("out", "", "write the results as JSON to this file")
	presses := fs.String("press", "none", "comma-separated compression methods ("+strings.Join(press.Names(), ", ")+
		"), storage stages ("+strings.Join(press.QuantNames(), ", ")+"; alone they ignore --ratio, except think, whose ratio is the share of key channels removed) or A+B compositions of the two (e.g. keydiff+kivi4); none = full cache")
	ratios := fs.String("ratio", "0.5", "comma-separated fractions of the KV cache to remove, in [0, 1)")
	sweep := fs.Bool("sweep", false, "every method × ratios 0.25,0.5,0.75,0.875 plus none; with --out also writes a PNG plot beside it")
	kvFormat := fs.String("kv-format", "f32", "how the KV cache stores keys and values: f32 or bf16")
	queryAware := fs.Bool("query-aware", false, "compress the first turn's whole prompt, question included (default: the context alone, before the question is seen)")
	reuse := addReuseFlags(fs)
	duoHeads := fs.String("duo-heads", "", "head file from 'kvserve profile-heads': duo_attention ranks heads by its scores over all layers (default: measured on each prompt)")
	rf := addRetrievalFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	retrieval, err := rf.specs()
	if err != nil {
		return err
	}
	if *data == "" {
		return usageError{"--data is required"}
	}
	if *sweep {
		*presses = "none," + strings.Join(press.Names(), ",") + "," + strings.Join(press.QuantNames(), ",") + ",keydiff+kivi4,keydiff+kivi2"
		*ratios = "0.25,0.5,0.75,0.875"
	}
	format, err := kvcache.ParseFormat(*kvFormat)
	if err != nil {
		return usageError{err.Error()}
	}
	var configs []*press.Press
	seen := map[string]bool{} // name@ratio: a quantization press runs once, at ratio 0
	for _, name := range splitList(*presses) {
		if name == "none" {
			configs = append(configs, nil)
			continue
		}
		for _, rs := range splitList(*ratios) {
			ratio, err := strconv.ParseFloat(rs, 64)
			if err != nil || ratio < 0 || ratio >= 1 {
				return usageError{fmt.Sprintf("--ratio: %q is not a fraction in [0, 1)", rs)}
			}
			p, err := press.Parse(name, ratio)
			if err != nil {
				return usageError{err.Error()}
			}
			if p.Name == "duo_attention" && *duoHeads != "" {
				if p, err = press.NewDuo(*duoHeads, ratio); err != nil {
					return usageError{"--duo-heads: " + err.Error()}
				}
			}
			if key := fmt.Sprintf("%s@%g", p.Name, p.Ratio); !seen[key] {
				seen[key] = true
				configs = append(configs, p)
			}
		}
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
	if reuse.methods != "" {
		return reuse.run(ctx, b, recs, *data, *out, format, stdout, stderr)
	}
	runs, err := bench.Accuracy(ctx, b, recs, configs, bench.AccuracyOptions{Turns: *turns, Progress: stderr, Format: format, QueryAware: *queryAware, Retrieval: retrieval})
	if err != nil {
		return err
	}
	rep := bench.Report{Model: b.Name, Data: *data, Runs: runs}
	// A few runs print their tables; a sweep prints one summary and keeps
	// the tables for a file beside --out.
	tables := stdout
	var tablesFile *os.File
	if len(runs) > maxTablesShown {
		tables = io.Discard
		if *out != "" {
			if tablesFile, err = os.Create(strings.TrimSuffix(*out, filepath.Ext(*out)) + ".txt"); err != nil {
				return err
			}
			defer tablesFile.Close()
			tables = tablesFile
		}
	}
	for _, run := range runs {
		run.Table(tables)
		fmt.Fprintln(tables)
	}
	if len(runs) > maxTablesShown {
		if rep.HasRetrieval() {
			bench.RunLines(stdout, runs)
		} else {
			bench.Summary(stdout, runs)
		}
		if tablesFile != nil {
			fmt.Fprintf(stderr, "wrote %s (the %d per-run tables)\n", tablesFile.Name(), len(runs))
		}
	}
	if *out != "" {
		buf, err := json.MarshalIndent(rep, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, append(buf, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", *out)
		if len(retrieval) > 0 {
			png := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".png"
			if err := bench.PlotRetrieval(&rep, fmt.Sprintf("%s on %s: retrieval at decode", b.Name, filepath.Base(*data)), png); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "wrote %s\n", png)
		}
		if *sweep {
			png := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".png"
			if err := bench.PlotAccuracy(&rep, fmt.Sprintf("%s on %s", b.Name, filepath.Base(*data)), png); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "wrote %s\n", png)
		}
	}
	return nil
}

// maxTablesShown is how many runs' tables bench accuracy prints; with
// more it prints the summary (bench.Summary) instead.
const maxTablesShown = 4

func benchPerf(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench perf", "[--model DIR] [--prompt-tokens 512,2048] [--gen-tokens 128] [--threads N] [--json]",
		"Times prefill of each prompt length (TTFT) and greedy decoding after the\n"+
			"first prompt, on reproducible random token ids. The best of --repeats runs\n"+
			"counts.", stderr)
	mf := addModelFlags(fs)
	promptTokens := fs.String("prompt-tokens", "512,2048", "comma-separated prompt lengths")
	genTokens := fs.Int("gen-tokens", 128, "tokens to decode after the first prompt")
	repeats := fs.Int("repeats", 3, "repetitions per measurement (the best counts)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	rf := addRetrievalFlags(fs, false)
	kvFormat := fs.String("kv-format", "f32", "with --retrieval: how the KV cache stores keys and values (f32 or bf16)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lens, err := positiveInts("--prompt-tokens", *promptTokens)
	if err != nil {
		return err
	}
	retrieval, err := rf.specs()
	if err != nil {
		return err
	}
	format, err := kvcache.ParseFormat(*kvFormat)
	if err != nil {
		return usageError{err.Error()}
	}
	b, pool, closeAll, err := mf.open()
	if err != nil {
		return err
	}
	defer closeAll()
	if len(retrieval) > 0 {
		return benchPerfRetrieval(b, pool.Threads(), lens, *genTokens, *repeats, format, retrieval[0], *asJSON, stdout)
	}
	rep, err := bench.Perf(context.Background(), b, pool, bench.PerfOptions{PromptTokens: lens, GenTokens: *genTokens, Repeats: *repeats})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	rep.Table(stdout)
	return nil
}

func benchCompare(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench compare", "--result FILE.json [--baseline FILE.json] [--reference FILE.jsonl]",
		"Compares the output of 'kvserve bench accuracy --out' with a per-cell\n"+
			"baseline (e.g. ../shared/bench/tinychat-hf-baseline.json) and with reference\n"+
			"answers of the same press and ratio (e.g. ../shared/bench/reference/kvpress-dev.jsonl).", stderr)
	result := fs.String("result", "", "accuracy result written by --out")
	baseline := fs.String("baseline", "", "per task × length × turn baseline table")
	reference := fs.String("reference", "", "reference answers, one JSON object a line")
	verbose := fs.Bool("v", false, "list every answer that differs from the reference")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *result == "" {
		return usageError{"--result is required"}
	}
	rep, err := bench.ReadReport(*result)
	if err != nil {
		return err
	}
	var base *bench.Baseline
	if *baseline != "" {
		if base, err = bench.ReadBaseline(*baseline); err != nil {
			return err
		}
	}
	var ref []bench.ReferenceAnswer
	if *reference != "" {
		if ref, err = bench.ReadReference(*reference); err != nil {
			return err
		}
	}
	bench.WriteComparison(stdout, rep, base, ref, *verbose)
	return nil
}

func benchPlot(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench plot", "--result FILE.json --out FILE.png [--title T]",
		"Draws accuracy against KV bytes held (relative to a full bf16 cache) from\n"+
			"the output of 'kvserve bench accuracy --out': the Pareto frontier of each\n"+
			"method family (a press and its compositions with a storage stage), the\n"+
			"best twelve families by area under their frontier, the full cache as a\n"+
			"point. A result of --retrieval runs is drawn against the bytes read per\n"+
			"decode step instead, one line per selector.", stderr)
	result := fs.String("result", "", "accuracy result written by --out")
	out := fs.String("out", "", "PNG file to write")
	title := fs.String("title", "", "plot title (default: the result's model and data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *result == "" || *out == "" {
		return usageError{"--result and --out are required"}
	}
	rep, err := bench.ReadReport(*result)
	if err != nil {
		return err
	}
	if *title == "" {
		*title = fmt.Sprintf("%s on %s", rep.Model, rep.Data)
	}
	draw := bench.PlotAccuracy
	if rep.HasRetrieval() {
		draw = bench.PlotRetrieval
	}
	if err := draw(rep, *title, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}

func benchSummary(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench summary", "--result FILE.json",
		"Prints one line per method family of an accuracy result: the best share\n"+
			"of the full cache's accuracy that any of its runs reaches within 1/16,\n"+
			"1/8, 1/4, 1/2 and all of a full bf16 cache's bytes (5 % slack), and the\n"+
			"time its runs took. It is what 'bench accuracy --sweep' prints. A result\n"+
			"of --retrieval runs gets one line per run instead: correct answers per\n"+
			"turn as a share of the full cache's, bytes read per decode step and held\n"+
			"resident relative to a bf16 cache.", stderr)
	result := fs.String("result", "", "accuracy result written by --out")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *result == "" {
		return usageError{"--result is required"}
	}
	rep, err := bench.ReadReport(*result)
	if err != nil {
		return err
	}
	if rep.HasRetrieval() {
		bench.RunLines(stdout, rep.Runs)
		return nil
	}
	bench.Summary(stdout, rep.Runs)
	return nil
}
