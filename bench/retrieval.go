package bench

import (
	"context"
	"fmt"
	"github.com/kvserve/kvserve/internal/chart"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/retrieve"
)

// RetrievalSpec is one retrieval setting of an accuracy run: a selector
// of package retrieve, its budget, and where the unread KV lives.
type RetrievalSpec struct {
	Name   string
	Budget retrieve.Budget
	// Cold is "" (the KV stays in the pool), "memory" (a cold region of
	// memory a step fetches from) or "disk" (a temporary file).
	Cold string
	// ColdDir is the directory of the disk tier's file ("" for the
	// system's temporary directory).
	ColdDir string
}

func (s RetrievalSpec) String() string {
	name := s.Name + "@" + s.Budget.String()
	if s.Cold != "" {
		name += "/cold-" + s.Cold
	}
	return name
}

// RetrievalResult is what a run's decode steps read under retrieval,
// beside the run's kv_bytes: means per decode step over every record and
// turn, summed over layers and KV heads.
type RetrievalResult struct {
	Retrieval string `json:"retrieval"`
	Budget    string `json:"budget"`
	Cold      string `json:"cold,omitempty"`
	// KVBytesReadPerStep is the keys and values attended plus what
	// selection read (kv_bytes_attended_per_step +
	// index_bytes_read_per_step).
	KVBytesReadPerStep float64 `json:"kv_bytes_read_per_step"`
	retrieve.Stats
	// FullBF16BytesPerStep is what a step would read of a bf16 cache of
	// the same tokens with no retrieval.
	FullBF16BytesPerStep float64 `json:"full_bf16_bytes_per_step"`
}

// retrievalRuns is the accuracy harness's retrieval state: one spec per
// run (nil for runs without retrieval) and each run's retriever for the
// record in progress.
type retrievalRuns struct {
	specs []*RetrievalSpec
	b     *engine.Bundle
	ends  []bool
	live  []*retrieve.Retriever
	tiers []*kvcache.ColdTier
	sums  []retrieve.Stats // per run: sums of the per-step means × steps
}

// withRetrieval returns the presses of the runs, each press once per
// spec (none: once, without retrieval), and the runs' retrieval state (nil
// without specs).
func withRetrieval(b *engine.Bundle, presses []*press.Press, specs []RetrievalSpec) ([]*press.Press, *retrievalRuns) {
	if len(specs) == 0 {
		return presses, nil
	}
	rr := &retrievalRuns{b: b}
	var out []*press.Press
	for _, p := range presses {
		for i := range specs {
			out = append(out, p)
			rr.specs = append(rr.specs, &specs[i])
		}
	}
	rr.live = make([]*retrieve.Retriever, len(out))
	rr.tiers = make([]*kvcache.ColdTier, len(out))
	rr.sums = make([]retrieve.Stats, len(out))
	for _, s := range specs {
		if s.Name == "sentencekv" {
			rr.ends = retrieve.SentenceEnds(func(id int) string { return b.Tokenizer.Decode([]int{id}) }, b.Net.Config.VocabSize)
			break
		}
	}
	return out, rr
}

// label names the runs' retrieval.
func (rr *retrievalRuns) label(runs []*Run) {
	if rr == nil {
		return
	}
	for i, run := range runs {
		s := rr.specs[i]
		run.RetrievalResult = &RetrievalResult{Retrieval: s.Name, Budget: s.Budget.String(), Cold: s.Cold}
	}
}

// request gives run i's request for the prompt ids the record's retriever
// (made at the record's first turn).
func (rr *retrievalRuns) request(i int, ids []int, req *engine.Request) error {
	if rr == nil {
		return nil
	}
	r := rr.live[i]
	if r == nil {
		s := rr.specs[i]
		opt := retrieve.Options{Budget: s.Budget, SentenceEnd: rr.ends}
		switch s.Cold {
		case "":
		case "memory":
			rr.tiers[i] = kvcache.NewColdTier()
		case "disk":
			t, err := kvcache.NewDiskTier(s.ColdDir)
			if err != nil {
				return err
			}
			rr.tiers[i] = t
		default:
			return fmt.Errorf("cold tier %q: want memory or disk", s.Cold)
		}
		opt.Cold = rr.tiers[i]
		var err error
		if r, err = retrieve.New(s.Name, rr.b.Net.Config, opt); err != nil {
			return err
		}
		rr.live[i] = r
	}
	r.Tokens(ids)
	req.Retrieve = r
	return nil
}

// endRecord adds the record's reads to its runs and drops the retrievers
// and tiers.
func (rr *retrievalRuns) endRecord() {
	if rr == nil {
		return
	}
	for i, r := range rr.live {
		if r == nil {
			continue
		}
		st, n := r.Stats(), 0.0
		n = float64(st.Steps)
		sum := &rr.sums[i]
		sum.Steps += st.Steps
		sum.KVBytesRead += st.KVBytesRead * n
		sum.IndexBytesRead += st.IndexBytesRead * n
		sum.TokensRead += st.TokensRead * n
		sum.TokensCached += st.TokensCached * n
		sum.Resident += st.Resident * n
		sum.ColdFetched += st.ColdFetched * n
		rr.live[i] = nil
		if rr.tiers[i] != nil {
			rr.tiers[i].Close()
			rr.tiers[i] = nil
		}
	}
}

// finish turns the sums into the runs' means.
func (rr *retrievalRuns) finish(runs []*Run, headDim int) {
	if rr == nil {
		return
	}
	for i, run := range runs {
		s := rr.sums[i]
		res := run.RetrievalResult
		if s.Steps == 0 {
			continue
		}
		n := float64(s.Steps)
		res.Stats = retrieve.Stats{Steps: s.Steps, KVBytesRead: s.KVBytesRead / n, IndexBytesRead: s.IndexBytesRead / n,
			TokensRead: s.TokensRead / n, TokensCached: s.TokensCached / n, Resident: s.Resident / n, ColdFetched: s.ColdFetched / n}
		res.KVBytesReadPerStep = res.KVBytesRead + res.IndexBytesRead
		res.FullBF16BytesPerStep = res.TokensCached * float64(4*headDim)
	}
}

// retrievalLine writes a run's reads under its table.
func (r *RetrievalResult) line() string {
	if r == nil || r.Steps == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "retrieval %s at budget %s", r.Retrieval, r.Budget)
	if r.Cold != "" {
		fmt.Fprintf(&b, ", full KV in a cold tier (%s)", r.Cold)
	}
	fmt.Fprintf(&b, ": per decode step %.0f of %.0f tokens read (%.3f), %.0f bytes read (%.0f attended + %.0f index) = %.3f of a bf16 cache; resident %.0f bytes = %.3f of bf16",
		r.TokensRead, r.TokensCached, r.TokensRead/r.TokensCached, r.KVBytesReadPerStep, r.KVBytesRead, r.IndexBytesRead,
		r.KVBytesReadPerStep/r.FullBF16BytesPerStep, r.Resident, r.Resident/r.FullBF16BytesPerStep*float64(1))
	if r.Cold != "" {
		fmt.Fprintf(&b, "; %.0f bytes fetched from the cold tier per step", r.ColdFetched)
	}
	return b.String()
}

// RetrievalSpeed is decode speed after one context length, with the full
// cache and with retrieval, measured side by side on the same cache.
type RetrievalSpeed struct {
	Context   int     `json:"context"`
	Tokens    int     `json:"tokens"`
	Full      float64 `json:"full_tok_per_s"`
	Retrieved float64 `json:"retrieval_tok_per_s"`
	Speedup   float64 `json:"speedup"`
	// ReadFraction is the share of cached tokens a retrieved step read.
	ReadFraction float64 `json:"tokens_read_fraction"`
	// KVBytesReadPerStep is what a retrieved step read (keys and values
	// attended plus selection's reads); FullBytesPerStep what a full step
	// read.
	KVBytesReadPerStep float64 `json:"kv_bytes_read_per_step"`
	FullBytesPerStep   float64 `json:"full_kv_bytes_read_per_step"`
	KVBytesResident    float64 `json:"kv_bytes_resident"`
	// FirstFullMs and FirstRetrievedMs are the first decode step's times
	// (the last repeat's), not counted in the rates: retrieval's first
	// step builds the selector's index of the whole prompt.
	FirstFullMs      float64 `json:"first_step_full_ms"`
	FirstRetrievedMs float64 `json:"first_step_retrieval_ms"`
	// FullMinStepMs and RetrievedMinStepMs are the fastest single decode
	// step of each over all repeats, and MinStepSpeedup their ratio: on a
	// machine shared with other work, the least disturbed measure.
	FullMinStepMs      float64 `json:"full_min_step_ms"`
	RetrievedMinStepMs float64 `json:"retrieval_min_step_ms"`
	MinStepSpeedup     float64 `json:"min_step_speedup"`
}

// minMs returns the smaller of ms (0: none yet) and d in milliseconds.
func minMs(ms float64, d time.Duration) float64 {
	x := d.Seconds() * 1000
	if ms == 0 || x < ms {
		return x
	}
	return ms
}

// RetrievalPerfReport is what `kvserve bench perf --retrieval` prints.
type RetrievalPerfReport struct {
	Model     string           `json:"model"`
	Threads   int              `json:"threads"`
	Retrieval string           `json:"retrieval"`
	Budget    string           `json:"budget"`
	Cold      string           `json:"cold,omitempty"`
	KVFormat  string           `json:"kv_format"`
	Speeds    []RetrievalSpeed `json:"decode"`
}

// RetrievalPerf prefills reproducible random prompts of each length once,
// then times greedy decoding of gen tokens (after a first step timed
// apart) on forks of that cache, with
// every token read and with spec's retrieval, alternating, the best of
// repeats each.
func RetrievalPerf(ctx context.Context, b *engine.Bundle, threads int, lens []int, gen, repeats int, format kvcache.Format, spec RetrievalSpec) (*RetrievalPerfReport, error) {
	c := b.Net.Config
	repeats = max(repeats, 1)
	rep := &RetrievalPerfReport{Model: b.Name, Threads: threads, Retrieval: spec.Name, Budget: spec.Budget.String(), Cold: spec.Cold, KVFormat: format.String()}
	pool := b.Net.NewPool(0, format)
	for _, n := range lens {
		if n <= 1 || n+gen > c.MaxPositions {
			return nil, fmt.Errorf("context of %d tokens and %d to decode: want 2 … %d tokens in all", n, gen, c.MaxPositions)
		}
		ids := promptIDs(n, c.VocabSize)
		base := pool.NewSeq()
		if _, err := b.Net.Forward(base, ids, model.NoLogits); err != nil {
			base.Release()
			return nil, err
		}
		row := RetrievalSpeed{Context: n, Tokens: gen}
		for range repeats {
			for _, retrieved := range []bool{false, true} {
				rr := &retrievalRuns{specs: []*RetrievalSpec{&spec}, b: b, live: make([]*retrieve.Retriever, 1), tiers: make([]*kvcache.ColdTier, 1), sums: make([]retrieve.Stats, 1)}
				if spec.Name == "none" {
					rr.specs[0] = &RetrievalSpec{Name: "none", Budget: retrieve.Budget{Fraction: 1}, Cold: spec.Cold, ColdDir: spec.ColdDir}
				}
				var req engine.Request
				if retrieved {
					if spec.Name == "sentencekv" {
						rr.ends = retrieve.SentenceEnds(func(id int) string { return b.Tokenizer.Decode([]int{id}) }, c.VocabSize)
					}
					if err := rr.request(0, ids, &req); err != nil {
						base.Release()
						return nil, err
					}
				}
				cache, err := base.Fork(n)
				if err != nil {
					base.Release()
					return nil, err
				}
				tok := ids[n-1] // the prompt's last token again, then greedy
				if err := cache.Truncate(n - 1); err != nil {
					return nil, err
				}
				var first, total time.Duration
				minStep := time.Duration(math.MaxInt64)
				for i := range gen + 1 { // the first step builds the selector's index: timed apart
					t0 := time.Now()
					logits, err := b.Net.ForwardRetrieve(cache, []int{tok}, model.LastLogits, req.Retrieve)
					if err != nil {
						cache.Release()
						base.Release()
						return nil, err
					}
					tok = engine.Argmax(logits)
					d := time.Since(t0)
					if i == 0 {
						first = d
						continue
					}
					total += d
					minStep = min(minStep, d)
				}
				s := total.Seconds()
				full := float64(cache.StoredBytes())
				cache.Release()
				if !retrieved {
					row.FirstFullMs = first.Seconds() * 1000
					row.FullMinStepMs = minMs(row.FullMinStepMs, minStep)
					row.Full = max(row.Full, float64(gen)/s)
					row.FullBytesPerStep = full
					continue
				}
				row.FirstRetrievedMs = first.Seconds() * 1000
				row.RetrievedMinStepMs = minMs(row.RetrievedMinStepMs, minStep)
				row.Retrieved = max(row.Retrieved, float64(gen)/s)
				st := rr.live[0].Stats()
				row.ReadFraction = st.TokensRead / st.TokensCached
				row.KVBytesReadPerStep = st.KVBytesRead + st.IndexBytesRead
				row.KVBytesResident = st.Resident
				rr.endRecord()
				if err := ctx.Err(); err != nil {
					base.Release()
					return nil, err
				}
			}
		}
		base.Release()
		row.Speedup = row.Retrieved / row.Full
		row.MinStepSpeedup = row.FullMinStepMs / row.RetrievedMinStepMs
		rep.Speeds = append(rep.Speeds, row)
	}
	return rep, nil
}

// Table writes the report as a table.
func (r *RetrievalPerfReport) Table(w io.Writer) {
	cold := ""
	if r.Cold != "" {
		cold = ", unread KV in a cold tier (" + r.Cold + ")"
	}
	fmt.Fprintf(w, "model %s, %d threads, kv format %s, retrieval %s at budget %s%s\n", r.Model, r.Threads, r.KVFormat, r.Retrieval, r.Budget, cold)
	fmt.Fprintf(w, "%8s %7s %12s %16s %8s %16s %8s %10s %14s %14s %14s %16s\n", "context", "tokens", "full tok/s", "retrieval tok/s", "speedup",
		"min step ms f/r", "speedup", "read frac", "full B/step", "read B/step", "resident B", "1st step ms f/r")
	for _, s := range r.Speeds {
		fmt.Fprintf(w, "%8d %7d %12.1f %16.1f %7.2f× %7.2f/%-8.2f %7.2f× %10.3f %14.0f %14.0f %14.0f %7.1f/%-8.1f\n", s.Context, s.Tokens, s.Full, s.Retrieved, s.Speedup,
			s.FullMinStepMs, s.RetrievedMinStepMs, s.MinStepSpeedup,
			s.ReadFraction, s.FullBytesPerStep, s.KVBytesReadPerStep, s.KVBytesResident, s.FirstFullMs, s.FirstRetrievedMs)
	}
}

// PlotRetrieval draws accuracy against the bytes a decode step reads
// (kv_bytes_read_per_step over a full bf16 cache's), one line per
// selector (and cold tier) across its budgets, and writes a PNG.
func PlotRetrieval(rep *Report, title, path string) error {
	lines := map[string][]chart.Point{}
	var names []string
	for _, r := range rep.Runs {
		res := r.RetrievalResult
		if res == nil || r.Total == 0 || res.FullBF16BytesPerStep == 0 {
			continue
		}
		name := res.Retrieval
		if r.Press != "none" {
			name = r.Press + "+" + name
		}
		if res.Cold != "" {
			name += " (cold " + res.Cold + ")"
		}
		if _, ok := lines[name]; !ok {
			names = append(names, name)
		}
		lines[name] = append(lines[name], chart.Point{X: res.KVBytesReadPerStep / res.FullBF16BytesPerStep, Y: float64(r.Correct) / float64(r.Total)})
	}
	if len(names) == 0 {
		return fmt.Errorf("plot: no runs with retrieval")
	}
	sort.Strings(names)
	c := &chart.Chart{Title: title, XLabel: "bytes read per decode step / full bf16 cache", YLabel: "accuracy (exact match)", Width: 1000, Height: 640}
	for _, name := range names {
		pts := lines[name]
		sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
		c.Series = append(c.Series, chart.Series{Name: name, Points: pts})
	}
	return c.WriteFile(path)
}

// HasRetrieval reports whether any run of rep retrieved.
func (rep *Report) HasRetrieval() bool {
	for _, r := range rep.Runs {
		if r.RetrievalResult != nil {
			return true
		}
	}
	return false
}
