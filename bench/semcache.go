package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

// SemRow is one labelled request of a response-cache set
// (../shared/bench/semcache.jsonl).
type SemRow struct {
	ID       string `json:"id"`
	Cluster  string `json:"cluster"` // "" for a negative
	Category string `json:"category"`
	Kind     string `json:"kind"` // seed, same, surface, paraphrase, negative
	Prompt   string `json:"prompt"`
	Near     string `json:"near,omitempty"`
}

// ReadSemRows reads a response-cache set.
func ReadSemRows(path string) ([]SemRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []SemRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r SemRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		switch r.Kind {
		case "seed", "same", "surface", "paraphrase", "negative":
		default:
			return nil, fmt.Errorf("%s:%d: kind %q: want seed, same, surface, paraphrase or negative", path, n, r.Kind)
		}
		if r.Kind != "negative" && r.Cluster == "" {
			return nil, fmt.Errorf("%s:%d: a %s row needs a cluster", path, n, r.Kind)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no rows", path)
	}
	return rows, nil
}

// SemReport is the result of the response-cache protocol.
type SemReport struct {
	Data   string          `json:"data"`
	Runs   []*SemRun       `json:"runs"`
	Curves []*SemCurve     `json:"curves"`
	Timing *SemTiming      `json:"timing,omitempty"`
	Config semcache.Config `json:"config"`
	// IC is IC-Cache mode's measurement, when asked for.
	IC []ICResult `json:"ic_cache,omitempty"`
	// Upgrade is the embedder-upgrade measurement, when asked for.
	Upgrade []UpgradePoint `json:"upgrade,omitempty"`
}

// SemRun is one policy's pass over the set.
type SemRun struct {
	Policy   string         `json:"policy"`
	Embedder string         `json:"embedder"`
	Default  bool           `json:"default"`
	Rows     []SemRowResult `json:"rows"`
}

// SemRowResult is one request's outcome: Right when the entry served
// belongs to the row's cluster.
type SemRowResult struct {
	ID         string  `json:"id"`
	Kind       string  `json:"kind"`
	Category   string  `json:"category"`
	Hit        bool    `json:"hit"`
	Right      bool    `json:"right"`
	Tier       string  `json:"tier,omitempty"`
	Similarity float64 `json:"similarity"`
}

// SemCurve is a policy's trade-off as its thresholds move.
type SemCurve struct {
	Policy   string     `json:"policy"`
	Embedder string     `json:"embedder"`
	Points   []SemPoint `json:"points"`
}

// SemPoint is one setting of a curve: the share of paraphrase rows served
// the right answer, and of negative rows served any answer.
type SemPoint struct {
	Setting       string  `json:"setting"`
	ParaphraseHit float64 `json:"paraphrase_hit_rate"`
	FalseHit      float64 `json:"false_hit_rate"`
	WrongHit      float64 `json:"wrong_hit_rate"` // paraphrase rows served another cluster's answer
}

// SemTiming is the lookup's cost.
type SemTiming struct {
	ExactHitMicros    float64 `json:"exact_hit_us"`
	SemanticHitMicros float64 `json:"semantic_hit_us"`
	MissMicros        float64 `json:"lookup_miss_us"`
	// GenerateMicros is a generated answer's mean latency (a miss's cost).
	GenerateMicros float64 `json:"generate_us,omitempty"`
}

// SemOptions configures SemCache.
type SemOptions struct {
	Embedder semcache.Embedder
	Config   semcache.Config
	// Load is the load the threshold sees, in [0, 1] (0.5: as configured).
	Load     float64
	Progress io.Writer
}

// semRequest is the chat request a row sends: greedy, the row's category in
// the request field when categorized.
func semRequest(r *SemRow, categorized bool) *semcache.Request {
	body := map[string]any{"model": "m", "temperature": 0, "max_tokens": 64,
		"messages": []any{map[string]any{"role": "user", "content": r.Prompt}}}
	if categorized {
		body["semcache_category"] = r.Category
	}
	buf, _ := json.Marshal(body)
	req, err := semcache.ParseRequest(buf)
	if err != nil {
		panic(err) // the body is built above
	}
	return req
}

// semPass stores every seed, then looks up every other row.
func semPass(ctx context.Context, rows []SemRow, cfg semcache.Config, emb semcache.Embedder, load float64, categorized bool, progress io.Writer, label string) ([]SemRowResult, []*semcache.Result, *SemTiming, error) {
	c, err := semcache.New(ctx, cfg, emb)
	if err != nil {
		return nil, nil, nil, err
	}
	c.SetLoad(func() float64 { return load })
	if progress != nil {
		fmt.Fprintf(progress, "%s (%s):\n", label, emb.Name())
	}
	bar := newProgress(progress, len(rows))
	hits := 0
	for i := range rows {
		r := &rows[i]
		if r.Kind != "seed" {
			continue
		}
		q := &semcache.Query{Request: semRequest(r, categorized)}
		if why := c.Store(ctx, q, nil, &semcache.Answer{Choices: []semcache.Choice{{Text: r.Cluster, Finish: "stop"}}}); why != "" {
			return nil, nil, nil, fmt.Errorf("storing seed %s: %s", r.ID, why)
		}
		bar.step(hits)
	}
	var out []SemRowResult
	var results []*semcache.Result
	var tm SemTiming
	var nExact, nSem, nMiss int
	for i := range rows {
		r := &rows[i]
		if r.Kind == "seed" {
			continue
		}
		q := &semcache.Query{Request: semRequest(r, categorized)}
		start := time.Now()
		res := c.Lookup(ctx, q)
		us := float64(time.Since(start).Nanoseconds()) / 1e3
		if res.Err != nil && res.Reason == "embed_error" {
			return nil, nil, nil, fmt.Errorf("row %s: %w", r.ID, res.Err)
		}
		switch {
		case res.Hit && res.Tier == "semantic":
			tm.SemanticHitMicros += us
			nSem++
		case res.Hit:
			tm.ExactHitMicros += us
			nExact++
		default:
			tm.MissMicros += us
			nMiss++
		}
		row := SemRowResult{ID: r.ID, Kind: r.Kind, Category: r.Category, Hit: res.Hit, Tier: res.Tier, Similarity: res.Similarity}
		row.Right = res.Hit && r.Cluster != "" && res.Answer.Choices[0].Text == r.Cluster
		out = append(out, row)
		results = append(results, res)
		if row.Right {
			hits++
		}
		bar.step(hits)
	}
	bar.done()
	div := func(s float64, n int) float64 {
		if n == 0 {
			return 0
		}
		return s / float64(n)
	}
	tm.ExactHitMicros, tm.SemanticHitMicros, tm.MissMicros = div(tm.ExactHitMicros, nExact), div(tm.SemanticHitMicros, nSem), div(tm.MissMicros, nMiss)
	return out, results, &tm, nil
}

// SemCache runs the protocol of ../shared/bench/README.md: the shipped
// configuration (opts.Config) once, then three policies along their
// threshold sweeps — one global threshold over all entries, per-category
// thresholds, and per-category thresholds with back-off margins (and the
// configured number checks). Per-category settings are chosen per point
// as the lowest threshold (and, with back-off, the margin) whose false-hit
// rate on the category's negatives stays within the point's target.
func SemCache(ctx context.Context, rows []SemRow, opts SemOptions) (*SemReport, error) {
	emb := opts.Embedder
	rep := &SemReport{Config: opts.Config}
	def, _, tm, err := semPass(ctx, rows, opts.Config, emb, opts.Load, true, opts.Progress, "default config")
	if err != nil {
		return nil, err
	}
	rep.Timing = tm
	rep.Runs = append(rep.Runs, &SemRun{Policy: "default", Embedder: emb.Name(), Default: true, Rows: def})

	// The global policy: no categories, one threshold; neighbours are kept
	// so that every threshold is judged from one pass.
	global := opts.Config
	global.Categories, global.Classify, global.LoadAdapt, global.CalibratedFor = nil, false, 0, ""
	global.Default = semcache.Policy{Threshold: 0.01}
	grows, gres, _, err := semPass(ctx, rows, global, emb, 0.5, false, opts.Progress, "global policy")
	if err != nil {
		return nil, err
	}
	// Per category: one pass with every category's threshold low, so the
	// neighbours of each row are those of its own category.
	percat := opts.Config
	percat.LoadAdapt, percat.CalibratedFor = 0, ""
	percat.Categories = map[string]semcache.Policy{}
	for name, p := range opts.Config.Categories {
		percat.Categories[name] = semcache.Policy{Threshold: 0.01, MatchNumbers: p.MatchNumbers, TTL: p.TTL}
	}
	prows, pres, _, err := semPass(ctx, rows, percat, emb, 0.5, true, opts.Progress, "per-category policy")
	if err != nil {
		return nil, err
	}

	thresholds := sweep(0.5, 1.0005, 0.0025)
	gc := &SemCurve{Policy: "global", Embedder: emb.Name()}
	for _, t := range thresholds {
		d := decideAll(rows, grows, gres, func(string) (float64, float64, bool) { return t, 0, false })
		gc.Points = append(gc.Points, point(fmt.Sprintf("%.4f", t), d))
	}
	rep.Curves = append(rep.Curves, gc)
	for _, backoff := range []bool{false, true} {
		name := "per-category"
		margins := []float64{0}
		if backoff {
			name, margins = "per-category+back-off", []float64{0, 0.005, 0.01, 0.02, 0.04, 0.08}
		}
		cv := &SemCurve{Policy: name, Embedder: emb.Name()}
		for _, target := range []float64{0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1} {
			set := tunePerCategory(rows, prows, pres, thresholds, margins, target, backoff)
			d := decideAll(rows, prows, pres, func(cat string) (float64, float64, bool) {
				s := set[cat]
				return s[0], s[1], backoff
			})
			var desc []string
			for _, cat := range sortedKeys(set) {
				desc = append(desc, fmt.Sprintf("%s=%.4f/%.3f", cat, set[cat][0], set[cat][1]))
			}
			cv.Points = append(cv.Points, point(fmt.Sprintf("target %.3f: %s", target, strings.Join(desc, " ")), d))
		}
		rep.Curves = append(rep.Curves, cv)
	}
	// The runs of the JSON shape: each policy at its best setting within
	// the default's false-hit rate.
	defPt := point("default", def)
	for _, cv := range rep.Curves {
		best := bestWithin(cv.Points, max(defPt.FalseHit, 0.01))
		run := &SemRun{Policy: cv.Policy + " @ " + best.Setting, Embedder: emb.Name()}
		src, res := prows, pres
		if cv.Policy == "global" {
			src, res = grows, gres
		}
		run.Rows = replay(rows, src, res, cv, best)
		rep.Runs = append(rep.Runs, run)
	}
	return rep, nil
}

// sweep returns from, from+step, … below to.
func sweep(from, to, step float64) []float64 {
	var out []float64
	for t := from; t < to; t += step {
		out = append(out, math.Round(t*1e4)/1e4)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decide judges one looked-up row again at a threshold and margin: hash
// hits stand; a semantic candidate is the best eligible neighbour.
func decide(base SemRowResult, res *semcache.Result, threshold, margin float64, backoff bool) (hit bool, answer string) {
	if base.Hit && base.Tier != "semantic" {
		return true, res.Answer.Choices[0].Text
	}
	var best *semcache.Neighbor
	runner := -1.0
	for i := range res.Neighbors {
		n := &res.Neighbors[i]
		if backoff && !n.Eligible {
			continue
		}
		if best == nil {
			best = n
		} else if runner < 0 && n.Answer.Choices[0].Text != best.Answer.Choices[0].Text {
			runner = n.Similarity
		}
	}
	if best == nil {
		return false, ""
	}
	if !backoff {
		margin = 0
	}
	if ok, _ := semcache.Decide(best.Similarity, runner, threshold, margin); !ok {
		return false, ""
	}
	return true, best.Answer.Choices[0].Text
}

func decideAll(rows []SemRow, base []SemRowResult, res []*semcache.Result, setting func(cat string) (float64, float64, bool)) []SemRowResult {
	byID := map[string]*SemRow{}
	for i := range rows {
		byID[rows[i].ID] = &rows[i]
	}
	out := make([]SemRowResult, len(base))
	for i, b := range base {
		t, m, bo := setting(b.Category)
		hit, ans := decide(b, res[i], t, m, bo)
		r := byID[b.ID]
		out[i] = SemRowResult{ID: b.ID, Kind: b.Kind, Category: b.Category, Hit: hit, Right: hit && r.Cluster != "" && ans == r.Cluster, Tier: b.Tier, Similarity: b.Similarity}
		if hit && b.Tier == "" {
			out[i].Tier = "semantic"
		}
	}
	return out
}

func point(setting string, rows []SemRowResult) SemPoint {
	var para, paraRight, paraWrong, neg, negHit int
	for _, r := range rows {
		switch r.Kind {
		case "paraphrase":
			para++
			if r.Right {
				paraRight++
			} else if r.Hit {
				paraWrong++
			}
		case "negative":
			neg++
			if r.Hit {
				negHit++
			}
		}
	}
	f := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	return SemPoint{Setting: setting, ParaphraseHit: f(paraRight, para), FalseHit: f(negHit, neg), WrongHit: f(paraWrong, para)}
}

// tunePerCategory picks, for each category, the setting (threshold,
// margin) with the most right paraphrase hits whose false-hit rate on the
// category's negatives is at most target (ties: the higher threshold).
func tunePerCategory(rows []SemRow, base []SemRowResult, res []*semcache.Result, thresholds, margins []float64, target float64, backoff bool) map[string][2]float64 {
	cats := map[string]bool{}
	for _, b := range base {
		cats[b.Category] = true
	}
	out := map[string][2]float64{}
	for cat := range cats {
		var idx []int
		for i, b := range base {
			if b.Category == cat {
				idx = append(idx, i)
			}
		}
		sub := make([]SemRowResult, len(idx))
		subRes := make([]*semcache.Result, len(idx))
		for j, i := range idx {
			sub[j], subRes[j] = base[i], res[i]
		}
		bestScore, bestSet := -1.0, [2]float64{1.01, 0}
		for _, m := range margins {
			for k := len(thresholds) - 1; k >= 0; k-- {
				t := thresholds[k]
				p := point("", decideAll(rows, sub, subRes, func(string) (float64, float64, bool) { return t, m, backoff }))
				if p.FalseHit > target+1e-9 {
					continue
				}
				if score := p.ParaphraseHit - p.WrongHit; score > bestScore+1e-9 {
					bestScore, bestSet = score, [2]float64{t, m}
				}
			}
		}
		out[cat] = bestSet
	}
	return out
}

// bestWithin returns the point with the most paraphrase hits whose
// false-hit rate is at most limit.
func bestWithin(pts []SemPoint, limit float64) SemPoint {
	best := SemPoint{Setting: "none", ParaphraseHit: -1}
	for _, p := range pts {
		if p.FalseHit <= limit+1e-9 && p.ParaphraseHit > best.ParaphraseHit {
			best = p
		}
	}
	return best
}

// replay recomputes a curve point's rows.
func replay(rows []SemRow, base []SemRowResult, res []*semcache.Result, cv *SemCurve, p SemPoint) []SemRowResult {
	if cv.Policy == "global" {
		var t float64
		fmt.Sscanf(p.Setting, "%g", &t)
		return decideAll(rows, base, res, func(string) (float64, float64, bool) { return t, 0, false })
	}
	set := map[string][2]float64{}
	if _, rest, ok := strings.Cut(p.Setting, ": "); ok {
		for _, f := range strings.Fields(rest) {
			var t, m float64
			name, vals, _ := strings.Cut(f, "=")
			fmt.Sscanf(strings.Replace(vals, "/", " ", 1), "%g %g", &t, &m)
			set[name] = [2]float64{t, m}
		}
	}
	backoff := strings.Contains(cv.Policy, "back-off")
	return decideAll(rows, base, res, func(cat string) (float64, float64, bool) {
		s, ok := set[cat]
		if !ok {
			return 1.01, 0, backoff
		}
		return s[0], s[1], backoff
	})
}

// SemTable prints hit rates per category and kind for each run.
func (rep *SemReport) Table(w io.Writer) {
	for _, run := range rep.Runs {
		fmt.Fprintf(w, "%s (%s)%s\n", run.Policy, run.Embedder, map[bool]string{true: "  [default]"}[run.Default])
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "category\tsame hit\tsurface hit\tparaphrase hit\tparaphrase wrong\tnegative false hit\t")
		cats := map[string]bool{}
		for _, r := range run.Rows {
			cats[r.Category] = true
		}
		names := append(sortedKeys(cats), "all")
		for _, cat := range names {
			type cnt struct{ n, right, wrong int }
			by := map[string]*cnt{}
			for _, r := range run.Rows {
				if cat != "all" && r.Category != cat {
					continue
				}
				c := by[r.Kind]
				if c == nil {
					c = &cnt{}
					by[r.Kind] = c
				}
				c.n++
				if r.Right {
					c.right++
				} else if r.Hit {
					c.wrong++
				}
			}
			cell := func(kind string, wrong bool) string {
				c := by[kind]
				if c == nil || c.n == 0 {
					return "-"
				}
				v := c.right
				if wrong {
					v = c.wrong
				}
				return fmt.Sprintf("%d/%d %.1f%%", v, c.n, 100*float64(v)/float64(c.n))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", cat, cell("same", false), cell("surface", false), cell("paraphrase", false), cell("paraphrase", true), cell("negative", true))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if rep.Timing != nil {
		fmt.Fprintf(w, "lookup: exact/surface hit %.1f µs, semantic hit %.1f µs, miss %.1f µs (mean, embedding included)\n",
			rep.Timing.ExactHitMicros, rep.Timing.SemanticHitMicros, rep.Timing.MissMicros)
	}
	for _, u := range rep.Upgrade {
		fmt.Fprintf(w, "upgrade %s → %s, %d of %d entries re-embedded (rest mapped): paraphrase hit %.1f%%, false hits %.1f%%\n",
			u.From, u.To, u.Sample, u.Entries, 100*u.ParaphraseHit, 100*u.FalseHit)
	}
	for _, r := range rep.IC {
		fmt.Fprintf(w, "IC-Cache, %s rows that missed with examples: %d; answer = nearest neighbour's: plain %d, with examples %d\n", r.Kind, r.Rows, r.PlainMatch, r.ICMatch)
	}
	for _, cv := range rep.Curves {
		best := bestWithin(cv.Points, 0.01)
		fmt.Fprintf(w, "%-22s at ≤ 1%% false hits: paraphrase hit %.1f%% (false %.1f%%, %s)\n", cv.Policy, 100*best.ParaphraseHit, 100*best.FalseHit, best.Setting)
	}
}

// MissLatency generates the answers of the first n seed rows with the
// model (chat template, greedy, at most 64 new tokens) and returns the mean
// wall time in µs: what a cache miss costs.
func MissLatency(ctx context.Context, b *engine.Bundle, rows []SemRow, n int) (float64, error) {
	var total time.Duration
	done := 0
	for i := range rows {
		if done == n {
			break
		}
		if rows[i].Kind != "seed" {
			continue
		}
		text, err := b.ChatPrompt([]chat.Message{{Role: "user", Content: rows[i].Prompt}})
		if err != nil {
			return 0, err
		}
		start := time.Now()
		_, err = b.Generate(ctx, b.Net.NewCache(), engine.Request{Prompt: b.Tokenizer.Encode(text), MaxTokens: 64}, func(int) error { return nil })
		if err != nil {
			return 0, err
		}
		total += time.Since(start)
		done++
	}
	if done == 0 {
		return 0, fmt.Errorf("no seed rows")
	}
	return float64(total.Microseconds()) / float64(done), nil
}
