package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/retrieve"
)

// retrievalFlags are the flags of retrieval at decode, shared by bench
// accuracy, bench perf and serve.
type retrievalFlags struct {
	names, budgets, cold, coldDir *string
}

func addRetrievalFlags(fs *flag.FlagSet, list bool) retrievalFlags {
	what := "a retrieval method"
	if list {
		what = "comma-separated retrieval methods"
	}
	return retrievalFlags{
		names: fs.String("retrieval", "", what+" for decode steps ("+strings.Join(retrieve.Names(), ", ")+
			"): each step reads the attention sinks, a recent window and the tokens the method picks, within --budget; none reads every token (and counts it). Prefill stays full"),
		budgets: fs.String("budget", "1/8", "tokens read per decode step and KV head, sinks and window included: a fraction (1/8, 0.125) or a count (256)"+map[bool]string{true: "; comma-separated for several", false: ""}[list]),
		cold:    fs.String("cold", "", "keep the KV outside the sinks and the window in a cold tier that a step fetches the selected tokens from: memory or disk (default: resident in the pool)"),
		coldDir: fs.String("cold-dir", "", "directory of the disk tier's temporary file (default: the system's)"),
	}
}

// specs returns the retrieval settings named, nil without --retrieval.
func (f retrievalFlags) specs() ([]bench.RetrievalSpec, error) {
	if *f.names == "" {
		return nil, nil
	}
	switch *f.cold {
	case "", "memory", "disk":
	default:
		return nil, usageError{fmt.Sprintf("--cold %q: want memory or disk", *f.cold)}
	}
	var out []bench.RetrievalSpec
	for _, name := range splitList(*f.names) {
		if err := retrieve.Check(name); err != nil {
			return nil, usageError{"--retrieval: " + err.Error()}
		}
		budgets := splitList(*f.budgets)
		if name == "none" {
			budgets = []string{"1"}
		}
		for _, bs := range budgets {
			b, err := retrieve.ParseBudget(bs)
			if err != nil {
				return nil, usageError{"--budget: " + err.Error()}
			}
			out = append(out, bench.RetrievalSpec{Name: name, Budget: b, Cold: *f.cold, ColdDir: *f.coldDir})
		}
	}
	return out, nil
}

// benchPerfRetrieval times decoding with and without retrieval, side by
// side, after each context length.
func benchPerfRetrieval(b *engine.Bundle, threads int, lens []int, gen, repeats int, format kvcache.Format, spec bench.RetrievalSpec, asJSON bool, stdout io.Writer) error {
	rep, err := bench.RetrievalPerf(context.Background(), b, threads, lens, gen, repeats, format, spec)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	rep.Table(stdout)
	return nil
}

// setRetrieval takes serve's retrieval flags: one method, one budget, the
// cold tier in memory only (a server's requests each get their own).
func (o *serveOptions) setRetrieval(f retrievalFlags) error {
	specs, err := f.specs()
	if err != nil || len(specs) == 0 {
		return err
	}
	if len(specs) > 1 {
		return usageError{"--retrieval and --budget: serve takes one method and one budget"}
	}
	if specs[0].Cold == "disk" {
		return usageError{"--cold disk: serve keeps its cold tier in memory (--cold memory)"}
	}
	o.retrieval, o.retrievalBudget, o.retrievalCold = specs[0].Name, specs[0].Budget, specs[0].Cold == "memory"
	return nil
}
