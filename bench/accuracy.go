package bench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

// AccuracyOptions configures an accuracy run.
type AccuracyOptions struct {
	// Turns is how many turns of each record to ask (0: all).
	Turns int
	// MaxNewTokens bounds each answer (the harness's default is 40).
	MaxNewTokens int
	// Progress, if set, receives a progress bar.
	Progress io.Writer
	// Format is how the KV cache stores keys and values.
	Format kvcache.Format
	// QueryAware compresses the first turn's whole prompt but its last
	// token — the question included — instead of the context alone, so
	// that methods observing the last queries see the question (the
	// query-aware setting; the default, query-agnostic, compresses before
	// the question exists, as SCBench's multi-turn mode does).
	QueryAware bool
	// Retrieval runs each press once per spec, its decode steps reading
	// only what the spec's selector picks (retrieval.go).
	Retrieval []RetrievalSpec
}

// RecordResult is the outcome of one turn of one record.
type RecordResult struct {
	ID           string `json:"id"`
	Task         string `json:"task"`
	TargetTokens int    `json:"target_tokens"`
	Turn         int    `json:"turn"` // 1-based
	Answer       string `json:"answer"`
	Expected     string `json:"expected"`
	Correct      bool   `json:"correct"`
	PromptTokens int    `json:"prompt_tokens"`
	// Skipped marks a prompt longer than the model's context: it is counted
	// apart, never cut.
	Skipped bool `json:"skipped"`
	// KVBytes is the KV cache's size at the end of prefill.
	KVBytes int64 `json:"kv_bytes"`
	// PeakKVBytes is the most the record's cache held at once while its
	// context was prefilled and compressed (see prefillContext).
	PeakKVBytes int64 `json:"peak_kv_bytes"`
	// LayerKVBytes is one layer's full KV of the context as stored: the
	// allowance of a layer-by-layer compression over its final cache.
	LayerKVBytes int64 `json:"layer_kv_bytes"`
	*ReuseRecord       // set by --reuse runs (reuse.go)
}

// Run is the result of one configuration over a task set.
type Run struct {
	Press string  `json:"press"`
	Ratio float64 `json:"ratio"`
	// QueryAware is set when the question was in the cache at compression.
	QueryAware bool `json:"query_aware,omitempty"`
	// KVBytes is the mean KV-cache size at the end of prefill, as stored.
	KVBytes int64 `json:"kv_bytes"`
	// PeakKVBytes is the mean of the records' peak KV bytes during prefill
	// and compression.
	PeakKVBytes int64 `json:"peak_kv_bytes"`
	// FullKVBytes is the mean size a bf16 cache of the same tokens takes.
	FullKVBytes int64 `json:"full_kv_bytes"`
	// KVFormat is how the cache stored keys and values.
	KVFormat string `json:"kv_format"`
	// Retrieval is set for runs whose decode steps retrieve.
	*RetrievalResult `json:",omitempty"`
	// CompressSeconds is the total time spent compressing.
	CompressSeconds float64 `json:"compress_seconds"`
	Correct         int     `json:"correct"`
	Total           int     `json:"total"`
	Skipped         int     `json:"skipped"`
	// Seconds is the time this run took on its own: its compressions and
	// its answers (the context prefill that all runs share is not counted).
	Seconds     float64        `json:"seconds"`
	Records     []RecordResult `json:"records"`
	*ReuseStats                // set by --reuse runs (reuse.go)
}

// Report is what `kvserve bench accuracy --out` writes.
type Report struct {
	Model string `json:"model"`
	Data  string `json:"data"`
	Runs  []*Run `json:"runs"`
}

// TurnMessages builds the chat of turn k (1-based) of a record: the system
// prompt, the context with the first question, then earlier questions with
// their reference answers (the context comes once, as in SCBench's
// multi-turn mode).
func TurnMessages(r *Record, k int) []chat.Message {
	var msgs []chat.Message
	if r.System != "" {
		msgs = append(msgs, chat.Message{Role: "system", Content: r.System})
	}
	for i := range k {
		q := r.Turns[i].Question
		if i == 0 {
			q = r.Context + "\n\n" + q
		}
		msgs = append(msgs, chat.Message{Role: "user", Content: q})
		if i < k-1 {
			msgs = append(msgs, chat.Message{Role: "assistant", Content: r.Turns[i].Answer})
		}
	}
	return msgs
}

// Accuracy asks every selected turn of every record with greedy decoding
// and scores exact matches after trimming white space, once per press
// (a nil press is the full cache), returning one Run per press.
//
// A record's context is prefilled once, recording what every press needs;
// each press then works on its own fork of that cache (blocks shared by
// reference, so forks cost no copy), compressing it before the question is
// seen. Each fork is kept across the record's turns: a later turn computes
// only the tokens its prompt adds.
func Accuracy(ctx context.Context, b *engine.Bundle, recs []Record, presses []*press.Press, opt AccuracyOptions) ([]*Run, error) {
	if opt.MaxNewTokens <= 0 {
		opt.MaxNewTokens = 40
	}
	if len(presses) == 0 {
		presses = []*press.Press{nil}
	}
	presses, retr := withRetrieval(b, presses, opt.Retrieval)
	cfg := b.Net.Config
	bf16PerToken := int64(2 * cfg.Layers * cfg.KVHeads * cfg.HeadDim * 2)
	total := 0
	for _, r := range recs {
		total += turnsOf(&r, opt.Turns) * len(presses)
	}
	runs := make([]*Run, len(presses))
	for i, p := range presses {
		runs[i] = &Run{Press: "none", KVFormat: opt.Format.String(), QueryAware: opt.QueryAware}
		if p != nil {
			runs[i].Press, runs[i].Ratio = p.Name, p.Ratio
		}
	}
	retr.label(runs)
	kvSum := make([]int64, len(presses))
	peakSum := make([]int64, len(presses))
	fullSum := make([]int64, len(presses))
	pool := b.Net.NewPool(0, opt.Format)
	bar := newProgress(opt.Progress, total)
	correct := 0
	for ri := range recs {
		r := &recs[ri]
		var caches []*kvcache.Seq
		var peaks []int64
		var layerBytes int64
		var prev []int
		for k := 1; k <= turnsOf(r, opt.Turns); k++ {
			text, err := b.ChatPrompt(TurnMessages(r, k))
			if err != nil {
				return nil, fmt.Errorf("record %s: %w", r.ID, err)
			}
			ids := b.Tokenizer.Encode(text)
			base := RecordResult{ID: r.ID, Task: r.Task, TargetTokens: r.TargetTokens, Turn: k,
				Expected: strings.TrimSpace(r.Turns[k-1].Answer), PromptTokens: len(ids)}
			if len(ids) >= b.ContextLength() {
				base.Skipped = true
				for _, run := range runs {
					run.Skipped++
					run.Records = append(run.Records, base)
					bar.step(correct)
				}
				continue
			}
			if caches == nil {
				if caches, peaks, layerBytes, err = prefillContext(ctx, b, pool, r, text, ids, presses, runs, opt.QueryAware); err != nil {
					return nil, fmt.Errorf("record %s: %w", r.ID, err)
				}
			}
			for i, cache := range caches {
				if k > 1 {
					if err := cache.Truncate(commonPrefix(prev, ids)); err != nil {
						return nil, err
					}
				}
				req := engine.Request{Prompt: ids, MaxTokens: opt.MaxNewTokens}
				if err := retr.request(i, ids, &req); err != nil {
					return nil, err
				}
				t0 := time.Now()
				out, err := b.Generate(ctx, cache, req, nil)
				runs[i].Seconds += time.Since(t0).Seconds()
				if err != nil {
					return nil, fmt.Errorf("record %s turn %d: %w", r.ID, k, err)
				}
				if err := cache.Truncate(len(ids)); err != nil {
					return nil, err
				}
				res := base
				res.Answer = strings.TrimSpace(b.Tokenizer.Decode(out.Output))
				res.Correct = res.Answer == res.Expected
				res.KVBytes = out.PrefillCacheBytes
				res.PeakKVBytes, res.LayerKVBytes = peaks[i], layerBytes
				kvSum[i] += out.PrefillCacheBytes
				peakSum[i] += peaks[i]
				fullSum[i] += int64(len(ids)) * bf16PerToken
				run := runs[i]
				run.Total++
				if res.Correct {
					run.Correct++
					correct++
				}
				run.Records = append(run.Records, res)
				bar.step(correct)
			}
			prev = ids
		}
		for _, c := range caches {
			c.Release()
		}
		retr.endRecord()
	}
	bar.done()
	for i, run := range runs {
		if run.Total > 0 {
			run.KVBytes = kvSum[i] / int64(run.Total)
			run.PeakKVBytes = peakSum[i] / int64(run.Total)
			run.FullKVBytes = fullSum[i] / int64(run.Total)
		}
		run.Seconds += run.CompressSeconds
	}
	retr.finish(runs, cfg.HeadDim)
	return runs, nil
}

// prefillContext prefills the first turn's prompt up to the end of the
// record's context (the question unseen) — or, queryAware, all of it but
// the last token — recording what the presses need, and returns one cache
// per press, compressed by it, with the most bytes each held at once and
// the bytes of one full layer of the context.
//
// The context is computed layer by layer (model.ForwardLayered) into a
// shared base: as soon as layer l holds the whole context, each press's
// cache adopts it by reference and a Layerwise press compresses it at
// once; the base then lets the layer go. A press's cache thus holds its
// compressed layers and at most one full one, as it would alone — its
// peak is measured after each layer is adopted and after compression
// (Keep compacts a cache it holds alone in place, so a press on its own
// allocates nothing more); a quantization stage (keydiff+kivi4's kivi4,
// gear, think) runs on each layer right after its eviction
// (Press.FinishLayer). Presses that plan over every layer (CAKE,
// CompressKV, WindowKV) score each layer on this pass, keeping scores
// only, and select each layer as a second layer-by-layer pass recomputes
// it: the same bound, for twice the prefill. Other presses that need every
// layer first (RazorAttention) compress once all are adopted: their peak
// is the full cache.
func prefillContext(ctx context.Context, b *engine.Bundle, pool *kvcache.Pool, r *Record, text string, ids []int, presses []*press.Press, runs []*Run, queryAware bool) ([]*kvcache.Seq, []int64, int64, error) {
	end := strings.Index(text, r.Context)
	if end < 0 {
		return nil, nil, 0, fmt.Errorf("context not found in the rendered prompt")
	}
	split := commonPrefix(b.Tokenizer.Encode(text[:end+len(r.Context)]), ids)
	if queryAware {
		split = len(ids) - 1
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, 0, err
	}
	base := pool.NewSeq()
	defer base.Release()
	caches := make([]*kvcache.Seq, len(presses))
	peaks := make([]int64, len(presses))
	for i := range caches {
		caches[i] = pool.NewSeq()
	}
	fail := func(err error) ([]*kvcache.Seq, []int64, int64, error) {
		for _, c := range caches {
			c.Release()
		}
		return nil, nil, 0, err
	}
	// Observations of a layer can go once every press has compressed it.
	dropObs := true
	for _, p := range presses {
		if p != nil && !p.StagedByLayer() {
			dropObs = false
		}
	}
	// Presses that plan over every layer (CAKE, CompressKV, WindowKV) score
	// each layer on this pass and select on a second one.
	plans := make([]*press.Plan, len(presses))
	second := false
	for i, p := range presses {
		if p != nil && p.Planned() && split > 0 {
			plans[i], second = p.NewPlan(b.Net), true
		}
	}
	var layerBytes int64
	var obs *model.Observer
	if split > 0 {
		obs = press.Observer(presses, 0, split)
		_, err := b.Net.ForwardLayered(base, ids[:split], model.NoLogits, obs, func(l int) error {
			layerBytes = max(layerBytes, base.LayerBytes(l))
			for i, p := range presses {
				c := caches[i]
				if plans[i] != nil { // score now, select on the second pass
					peaks[i] = max(peaks[i], base.LayerBytes(l))
					t0 := time.Now()
					p.PlanLayer(b.Net, base, obs, l, plans[i])
					runs[i].CompressSeconds += time.Since(t0).Seconds()
					continue
				}
				if err := c.AdoptLayer(base, l); err != nil {
					return err
				}
				peaks[i] = max(peaks[i], c.StoredBytes())
				if p == nil || !p.Layerwise() {
					continue
				}
				t0 := time.Now()
				err := p.ApplyLayer(b.Net, c, obs, l)
				if err == nil && p.StagedByLayer() { // keydiff+kivi4's kivi4 too
					err = p.FinishLayer(b.Net, c, obs, l)
				}
				runs[i].CompressSeconds += time.Since(t0).Seconds()
				if err != nil {
					return err
				}
			}
			base.ReleaseLayer(l)
			if dropObs && obs != nil {
				obs.DropLayer(l)
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
	}
	if second {
		again := pool.NewSeq()
		_, err := b.Net.ForwardLayered(again, ids[:split], model.NoLogits, nil, func(l int) error {
			for i, p := range presses {
				if plans[i] == nil {
					continue
				}
				c := caches[i]
				if err := c.AdoptLayer(again, l); err != nil {
					return err
				}
				peaks[i] = max(peaks[i], c.StoredBytes())
				t0 := time.Now()
				err := p.ApplyPlanned(c, l, plans[i])
				if err == nil && p.StagePerLayer() { // cake+kivi4's kivi4 too
					err = p.FinishLayer(b.Net, c, obs, l)
				}
				runs[i].CompressSeconds += time.Since(t0).Seconds()
				if err != nil {
					return err
				}
			}
			again.ReleaseLayer(l)
			return nil
		})
		again.Release()
		if err != nil {
			return fail(err)
		}
	}
	for i, p := range presses {
		c := caches[i]
		c.Advance(split)
		if p == nil {
			continue
		}
		t0 := time.Now()
		var err error
		if (p.Layerwise() || plans[i] != nil) && p.StagePerLayer() {
			// compressed and quantized layer by layer already
		} else if p.Layerwise() || plans[i] != nil {
			err = p.Finish(b.Net, c, obs)
		} else {
			err = p.Compress(b.Net, c, obs)
		}
		runs[i].CompressSeconds += time.Since(t0).Seconds()
		if err != nil {
			return fail(err)
		}
		peaks[i] = max(peaks[i], c.StoredBytes())
	}
	return caches, peaks, layerBytes, nil
}

func turnsOf(r *Record, limit int) int {
	if limit > 0 && limit < len(r.Turns) {
		return limit
	}
	return len(r.Turns)
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// Table writes correct/total per task × length × turn, skipped records
// counted apart.
func (run *Run) Table(w io.Writer) {
	type key struct {
		task   string
		length int
		turn   int
	}
	type cell struct{ correct, total, skipped int }
	cells := map[key]*cell{}
	var keys []key
	for _, r := range run.Records {
		k := key{r.Task, r.TargetTokens, r.Turn}
		c := cells[k]
		if c == nil {
			c = &cell{}
			cells[k] = c
			keys = append(keys, k)
		}
		switch {
		case r.Skipped:
			c.skipped++
		case r.Correct:
			c.correct++
			c.total++
		default:
			c.total++
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.task != b.task {
			return a.task < b.task
		}
		if a.length != b.length {
			return a.length < b.length
		}
		return a.turn < b.turn
	})
	fmt.Fprintf(w, "press %s, ratio %.3g, kv format %s\n", run.Press, run.Ratio, run.KVFormat)
	fmt.Fprintf(w, "%-18s %7s %5s %9s %8s\n", "task", "length", "turn", "correct", "skipped")
	for _, k := range keys {
		c := cells[k]
		fmt.Fprintf(w, "%-18s %7d %5d %4d/%-4d %8d\n", k.task, k.length, k.turn, c.correct, c.total, c.skipped)
	}
	fmt.Fprintf(w, "%-18s %7s %5s %4d/%-4d %8d\n", "all", "", "", run.Correct, run.Total, run.Skipped)
	if run.FullKVBytes > 0 {
		fmt.Fprintf(w, "KV cache at end of prefill: %d bytes as stored, %d bytes as bf16 (%.2f×), peak %d bytes while compressing, %.1f s\n",
			run.KVBytes, run.FullKVBytes, float64(run.KVBytes)/float64(run.FullKVBytes), run.PeakKVBytes, run.Seconds)
	}
	if l := run.RetrievalResult.line(); l != "" {
		fmt.Fprintln(w, l)
	}
}
