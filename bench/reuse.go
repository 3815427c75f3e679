package bench

import (
	"context"
	"fmt"
	"github.com/kvserve/kvserve/internal/chart"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/chunk"
	"github.com/kvserve/kvserve/model"
)

// Document is one retrieved passage of a record (../shared/bench/rag.jsonl):
// the record's context is its documents joined by a blank line.
type Document struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// ReuseStats describes a run of `bench accuracy --reuse`: how the
// documents' KV was reused and what it cost.
type ReuseStats struct {
	// Reuse is the method (blend's: full, naive, cacheblend,
	// cacheblend-deviation, cachecraft, ape; pie for PIE's edit of a cached
	// prompt).
	Reuse string `json:"reuse"`
	// RecomputeRatio is the share of reused tokens the method recomputes
	// (cacheblend, cachecraft; 0 for the others).
	RecomputeRatio float64 `json:"recompute_ratio"`
	// RecomputedTokens is the mean number of reused tokens recomputed per
	// record; ReusedTokens the mean reused, PromptTokens the mean prompt.
	RecomputedTokens float64 `json:"recomputed_tokens"`
	ReusedTokens     float64 `json:"reused_tokens"`
	// MeanTTFTms is the mean time from the prompt to the first token's
	// logits, its documents warm in the chunk cache (or, for pie, the
	// unedited prompt warm in the cache).
	MeanTTFTms float64 `json:"mean_ttft_ms"`
	// Warm says how the caches were warmed before timing.
	Warm string `json:"warm"`
}

// ReuseRecord is what a reuse run adds to a record's result.
type ReuseRecord struct {
	TTFTms     float64 `json:"ttft_ms"`
	Reused     int     `json:"reused_tokens"`
	Recomputed int     `json:"recomputed_tokens"`
}

// ReuseConfig is one method and recompute ratio to run.
type ReuseConfig struct {
	Method string
	Ratio  float64 // 0: the method's default
}

// ReuseMethods lists the methods `--reuse` takes.
var ReuseMethods = []string{"full", "naive", "cacheblend", "cacheblend-deviation", "cachecraft", "ape", "pie"}

// reuseWarm is how Reuse warms caches, as the runs state it.
const reuseWarm = "before a record is timed, its documents missing from the chunk cache are computed and put there " +
	"(each on its own after the prompt's head; untimed); for pie, the record's prompt with its documents unedited is prefilled in full (untimed)"

// Reuse runs the first turn of every record once per configuration,
// reusing the record's documents' KV from a chunk cache shared by all
// records (so a document computed for one record is found by the next
// that holds it, at whatever position) and returns one Run per
// configuration. Answers are greedy, at most opt.MaxNewTokens, exact match
// after trimming. The chunk cache lives in a pool bounded by budget bytes
// (0: none), evicting the least recently used documents.
func Reuse(ctx context.Context, b *engine.Bundle, recs []Record, configs []ReuseConfig, budget int64, opt AccuracyOptions) ([]*Run, error) {
	if opt.MaxNewTokens <= 0 {
		opt.MaxNewTokens = 40
	}
	methods := make([]blend.Method, len(configs))
	runs := make([]*Run, len(configs))
	for i, c := range configs {
		if c.Method != "pie" {
			m, err := blend.Parse(c.Method, c.Ratio)
			if err != nil {
				return nil, err
			}
			methods[i] = m
		}
		ratio := c.Ratio
		if ratio == 0 && (c.Method == "cacheblend" || c.Method == "cacheblend-deviation" || c.Method == "cachecraft") {
			ratio = 0.15
		}
		runs[i] = &Run{Press: "none", KVFormat: opt.Format.String(), ReuseStats: &ReuseStats{Reuse: c.Method, RecomputeRatio: ratio, Warm: reuseWarm}}
	}
	docs := map[string]string{} // every document of the set, by id: pie's unedited versions
	for _, r := range recs {
		for _, d := range r.Documents {
			docs[d.ID] = d.Text
		}
	}
	pool := b.Net.NewPool(budget, opt.Format)
	bl := &blend.Blender{Net: b.Net, Chunks: chunk.New(pool), ModelName: b.Name}
	defer bl.Chunks.Flush()
	bar := newProgress(opt.Progress, len(recs)*len(configs))
	start := time.Now()
	correct := 0
	ttft := make([]float64, len(configs))
	for ri := range recs {
		r := &recs[ri]
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := recordPrompt(b, r)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", r.ID, err)
		}
		base := RecordResult{ID: r.ID, Task: r.Task, TargetTokens: r.TargetTokens, Turn: 1,
			Expected: strings.TrimSpace(r.Turns[0].Answer), PromptTokens: len(p.Tokens())}
		if base.PromptTokens >= b.ContextLength() {
			base.Skipped = true
			for _, run := range runs {
				run.Skipped++
				run.Records = append(run.Records, base)
				bar.step(correct)
			}
			continue
		}
		if budget > 0 { // room for this record's documents and working caches
			perToken := int64(b.Net.Config.Layers*b.Net.Config.KVHeads) * pool.BlockBytes() / int64(pool.Config().BlockTokens)
			need := int64(3*base.PromptTokens+opt.MaxNewTokens+64*len(p)) * perToken
			if free := budget - pool.UsedBytes(); free < need {
				bl.Chunks.Reclaim(need - free)
			}
		}
		if _, err := bl.Warm("", p); err != nil {
			return nil, fmt.Errorf("record %s: %w", r.ID, err)
		}
		for i, c := range configs {
			var res *blend.Result
			var t0 time.Time
			if c.Method == "pie" {
				oldP, old, err := uneditedPrompt(b, pool, r, p, docs)
				if err != nil {
					return nil, fmt.Errorf("record %s: %w", r.ID, err)
				}
				t0 = time.Now()
				res, err = blend.Edit(b.Net, pool, old, oldP, p)
				old.Release()
				if err != nil {
					return nil, fmt.Errorf("record %s: pie: %w", r.ID, err)
				}
			} else {
				t0 = time.Now()
				if res, err = methods[i].Prefill(bl, "", p); err != nil {
					return nil, fmt.Errorf("record %s: %s: %w", r.ID, c.Method, err)
				}
			}
			ms := float64(time.Since(t0).Microseconds()) / 1000
			out, err := greedy(ctx, b, res, opt.MaxNewTokens)
			res.Cache.Release()
			if err != nil {
				return nil, fmt.Errorf("record %s: %w", r.ID, err)
			}
			rr := base
			rr.Answer = strings.TrimSpace(b.Tokenizer.Decode(out))
			rr.Correct = rr.Answer == rr.Expected
			rr.ReuseRecord = &ReuseRecord{TTFTms: ms, Reused: res.Reused, Recomputed: res.Recomputed}
			run := runs[i]
			run.Total++
			if rr.Correct {
				run.Correct++
				correct++
			}
			ttft[i] += ms
			run.RecomputedTokens += float64(res.Recomputed)
			run.ReusedTokens += float64(res.Reused)
			run.Records = append(run.Records, rr)
			bar.step(correct)
		}
	}
	bar.done()
	for i, run := range runs {
		if run.Total > 0 {
			n := float64(run.Total)
			run.MeanTTFTms = math.Round(ttft[i]/n*100) / 100
			run.RecomputedTokens = math.Round(run.RecomputedTokens/n*10) / 10
			run.ReusedTokens = math.Round(run.ReusedTokens/n*10) / 10
		}
		run.Seconds = time.Since(start).Seconds()
	}
	return runs, nil
}

// recordPrompt renders a record's first turn and cuts it into segments
// around its documents.
func recordPrompt(b *engine.Bundle, r *Record) (blend.Prompt, error) {
	if len(r.Documents) == 0 {
		return nil, fmt.Errorf("no documents: --reuse needs records with a documents list (../shared/bench/rag.jsonl)")
	}
	texts := make([]string, len(r.Documents))
	for i, d := range r.Documents {
		texts[i] = d.Text
	}
	if strings.Join(texts, "\n\n") != r.Context {
		return nil, fmt.Errorf("context is not the documents joined by a blank line")
	}
	text, err := b.ChatPrompt(TurnMessages(r, 1))
	if err != nil {
		return nil, err
	}
	return blend.Split(text, texts, b.Tokenizer.Encode)
}

// uneditedPrompt returns the cached prompt PIE edits: p's segments up to
// its last document, each edited document ("doc-11-32+1") replaced by its
// unedited version ("doc-11-32") where the set holds it, prefilled in full
// into a cache from pool.
func uneditedPrompt(b *engine.Bundle, pool *kvcache.Pool, r *Record, p blend.Prompt, docs map[string]string) (blend.Prompt, *kvcache.Seq, error) {
	last := 0
	for i, s := range p {
		if s.Doc {
			last = i
		}
	}
	old := slices.Clone(p[:last+1])
	di := 0
	for i, s := range old {
		if !s.Doc {
			continue
		}
		id := r.Documents[di].ID
		di++
		if k := strings.IndexByte(id, '+'); k > 0 {
			if text, ok := docs[id[:k]]; ok {
				old[i] = blend.Segment{Tokens: b.Tokenizer.Encode(text), Doc: true}
			}
		}
	}
	seq := pool.NewSeq()
	if _, err := b.Net.Forward(seq, old.Tokens(), model.NoLogits); err != nil {
		seq.Release()
		return nil, nil, err
	}
	return old, seq, nil
}

// greedy decodes from a prefilled prompt: at most n tokens, up to a stop
// token.
func greedy(ctx context.Context, b *engine.Bundle, res *blend.Result, n int) ([]int, error) {
	var out []int
	logits := res.Logits
	for len(out) < n && res.Cache.Next() < b.ContextLength() {
		id := argmax(logits)
		if slices.Contains(b.Stop, id) {
			break
		}
		out = append(out, id)
		if len(out) == n {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		if logits, err = b.Net.Forward(res.Cache, []int{id}, model.LastLogits); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// ReuseTable writes one line per reuse run: correct per task, mean TTFT
// and its speed-up over full prefill, tokens reused and recomputed.
func ReuseTable(w io.Writer, runs []*Run) {
	var tasks []string
	for _, run := range runs {
		for _, r := range run.Records {
			if !slices.Contains(tasks, r.Task) {
				tasks = append(tasks, r.Task)
			}
		}
	}
	sort.Strings(tasks)
	fullTTFT := 0.0
	for _, run := range runs {
		if run.ReuseStats != nil && run.Reuse == "full" {
			fullTTFT = run.MeanTTFTms
		}
	}
	width := len("reuse")
	for _, run := range runs {
		if run.ReuseStats != nil {
			width = max(width, len(run.Reuse))
		}
	}
	fmt.Fprintf(w, "%-*s %6s", width, "reuse", "ratio")
	for _, t := range tasks {
		fmt.Fprintf(w, " %12s", t)
	}
	fmt.Fprintf(w, " %12s %9s %8s %7s %10s\n", "all", "TTFT ms", "vs full", "reused", "recomputed")
	for _, run := range runs {
		if run.ReuseStats == nil {
			continue
		}
		fmt.Fprintf(w, "%-*s %6.3g", width, run.Reuse, run.RecomputeRatio)
		for _, t := range tasks {
			c, n := 0, 0
			for _, r := range run.Records {
				if r.Task == t && !r.Skipped {
					n++
					if r.Correct {
						c++
					}
				}
			}
			fmt.Fprintf(w, " %12s", fmt.Sprintf("%d/%d", c, n))
		}
		speed := "-"
		if fullTTFT > 0 && run.MeanTTFTms > 0 {
			speed = fmt.Sprintf("%.2f×", fullTTFT/run.MeanTTFTms)
		}
		fmt.Fprintf(w, " %12s %9.1f %8s %7.0f %10.1f\n", fmt.Sprintf("%d/%d", run.Correct, run.Total), run.MeanTTFTms, speed, run.ReusedTokens, run.RecomputedTokens)
	}
	if len(runs) > 0 && runs[0].ReuseStats != nil {
		fmt.Fprintf(w, "warm: %s\n", runs[0].Warm)
	}
}

// PlotReuse draws accuracy against mean TTFT, one point per reuse method
// and recompute ratio (a line joins a method's ratios), and writes a PNG.
func PlotReuse(rep *Report, title, path string) error {
	byMethod := map[string][]chart.Point{}
	var names []string
	for _, r := range rep.Runs {
		if r.ReuseStats == nil || r.Total == 0 {
			continue
		}
		if _, ok := byMethod[r.Reuse]; !ok {
			names = append(names, r.Reuse)
		}
		byMethod[r.Reuse] = append(byMethod[r.Reuse], chart.Point{X: r.MeanTTFTms, Y: float64(r.Correct) / float64(r.Total)})
	}
	if len(names) == 0 {
		return fmt.Errorf("plot: no reuse runs")
	}
	c := &chart.Chart{Title: title, XLabel: "mean TTFT, documents warm (ms)", YLabel: "accuracy (exact match)", Width: 900, Height: 560}
	for _, name := range names {
		pts := byMethod[name]
		sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
		c.Series = append(c.Series, chart.Series{Name: name, Points: pts})
	}
	return c.WriteFile(path)
}
