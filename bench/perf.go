package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/model"
)

// PerfOptions configures a speed run.
type PerfOptions struct {
	PromptTokens []int // prompt lengths to prefill, each timed apart
	GenTokens    int   // tokens decoded after the first prompt
	Repeats      int   // timed repetitions per measurement; the best counts
}

// PrefillResult is one prompt length's prefill speed.
type PrefillResult struct {
	Tokens   int     `json:"tokens"`
	TokPerS  float64 `json:"tok_per_s"`
	TTFTms   float64 `json:"ttft_ms"`
	GFLOPs   float64 `json:"gflop_per_s"`
	KVBytes  int64   `json:"kv_bytes"`
	KVPerTok float64 `json:"kv_bytes_per_token"`
}

// DecodeResult is the decode speed after a prompt.
type DecodeResult struct {
	Tokens      int     `json:"tokens"`
	AfterPrompt int     `json:"after_prompt"`
	TokPerS     float64 `json:"tok_per_s"`
	GBs         float64 `json:"weight_gb_per_s"`
}

// PerfReport is what `kvserve bench perf --json` prints.
type PerfReport struct {
	Model       string          `json:"model"`
	Threads     int             `json:"threads"`
	Kernels     string          `json:"kernels"`
	Numerics    string          `json:"numerics"` // exact or fast (see compute.Numerics)
	WeightBytes int64           `json:"weight_bytes"`
	Prefill     []PrefillResult `json:"prefill"`
	Decode      DecodeResult    `json:"decode"`
	PeakRSS     int64           `json:"peak_rss_bytes"`
	Machine     Machine         `json:"machine"`
}

// promptIDs returns n reproducible token ids that avoid the special tokens
// at the start of the vocabulary.
func promptIDs(n, vocab int) []int {
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 16 + r.IntN(vocab-16)
	}
	return ids
}

// flopsPerToken estimates the multiply-adds ×2 of one token at position pos:
// the weight matrices plus attention over pos earlier tokens.
func flopsPerToken(c *model.Config, pos int) float64 {
	h, f, hd := float64(c.HiddenSize), float64(c.IntermediateSize), float64(c.HeadDim)
	qd, kvd := float64(c.Heads)*hd, float64(c.KVHeads)*hd
	perLayer := 2*h*(2*qd+2*kvd) + 2*3*h*f + 4*float64(c.Heads)*hd*float64(pos+1)
	return float64(c.Layers)*perLayer + 2*h*float64(c.VocabSize)
}

// Perf measures prefill and decode speed.
func Perf(ctx context.Context, b *engine.Bundle, pool *compute.Pool, opt PerfOptions) (*PerfReport, error) {
	if opt.Repeats <= 0 {
		opt.Repeats = 1
	}
	c := b.Net.Config
	rep := &PerfReport{Model: b.Name, Threads: pool.Threads(), Kernels: compute.KernelName(), Numerics: b.Net.Numerics().String(), WeightBytes: b.Net.WeightBytes()}
	for _, n := range opt.PromptTokens {
		if n <= 0 || n >= c.MaxPositions {
			return nil, fmt.Errorf("prompt of %d tokens: want 1 … %d", n, c.MaxPositions-1)
		}
		ids := promptIDs(n, c.VocabSize)
		best := time.Duration(1<<63 - 1)
		var kv int64
		for range opt.Repeats {
			cache := b.Net.NewCache()
			t0 := time.Now()
			if _, err := b.Generate(ctx, cache, engine.Request{Prompt: ids, MaxTokens: 1, IgnoreEOS: true}, nil); err != nil {
				return nil, err
			}
			best = min(best, time.Since(t0))
			kv = cache.Bytes()
		}
		flops := 0.0
		for p := range n {
			flops += flopsPerToken(c, p)
		}
		s := best.Seconds()
		rep.Prefill = append(rep.Prefill, PrefillResult{Tokens: n, TokPerS: float64(n) / s, TTFTms: s * 1000,
			GFLOPs: flops / s / 1e9, KVBytes: kv, KVPerTok: float64(kv) / float64(n)})
	}
	if opt.GenTokens > 0 {
		n := 1
		if len(opt.PromptTokens) > 0 {
			n = opt.PromptTokens[0]
		}
		ids := promptIDs(n, c.VocabSize)
		best := time.Duration(1<<63 - 1)
		for range opt.Repeats {
			cache := b.Net.NewCache()
			if _, err := b.Generate(ctx, cache, engine.Request{Prompt: ids, MaxTokens: 1, IgnoreEOS: true}, nil); err != nil {
				return nil, err
			}
			if err := cache.Truncate(n); err != nil {
				return nil, err
			}
			t0 := time.Now()
			tok := ids[len(ids)-1]
			for range opt.GenTokens {
				logits, err := b.Net.Forward(cache, []int{tok}, model.LastLogits)
				if err != nil {
					return nil, err
				}
				tok = engine.Argmax(logits)
			}
			best = min(best, time.Since(t0))
		}
		s := best.Seconds()
		rep.Decode = DecodeResult{Tokens: opt.GenTokens, AfterPrompt: n, TokPerS: float64(opt.GenTokens) / s,
			GBs: float64(rep.WeightBytes) * float64(opt.GenTokens) / s / 1e9}
	}
	rep.PeakRSS = peakRSS()
	rep.Machine = MeasureMachine(pool.Threads())
	return rep, nil
}

// Table writes the report as a table.
func (r *PerfReport) Table(w io.Writer) {
	fmt.Fprintf(w, "model %s, %d threads, %s kernels, %s numerics, weights %.1f MB\n", r.Model, r.Threads, r.Kernels, r.Numerics, float64(r.WeightBytes)/1e6)
	fmt.Fprintf(w, "%-10s %8s %10s %10s %9s %12s\n", "phase", "tokens", "tok/s", "TTFT ms", "GFLOP/s", "KV B/token")
	for _, p := range r.Prefill {
		fmt.Fprintf(w, "%-10s %8d %10.1f %10.1f %9.1f %12.0f\n", "prefill", p.Tokens, p.TokPerS, p.TTFTms, p.GFLOPs, p.KVPerTok)
	}
	if r.Decode.Tokens > 0 {
		fmt.Fprintf(w, "%-10s %8d %10.1f %10s %9s %12s  (weights read at %.1f GB/s, after a %d-token prompt)\n",
			"decode", r.Decode.Tokens, r.Decode.TokPerS, "", "", "", r.Decode.GBs, r.Decode.AfterPrompt)
	}
	fmt.Fprintf(w, "peak RSS %.1f MB\n", float64(r.PeakRSS)/1e6)
	mc := r.Machine
	if mc.Threads == 0 {
		return
	}
	fmt.Fprintf(w, "machine %s: fp32 FMA %.1f GFLOP/s per core, %.1f on %d threads; memory read %.1f GB/s per core, %.1f on %d threads\n",
		mc.CPU, mc.FMAGFLOPsPerCore, mc.FMAGFLOPs, mc.Threads, mc.ReadGBsPerCore, mc.ReadGBs, mc.Threads)
	if mc.BF16DotGFLOPs > 0 || mc.Int8DotGOPs > 0 {
		fmt.Fprintf(w, "dot-product peaks on %d threads: bf16 VDPBF16PS %.1f GFLOP/s, int8 VPDPBUSD %.1f GOP/s (0: not on this CPU)\n",
			mc.Threads, mc.BF16DotGFLOPs, mc.Int8DotGOPs)
	}
	fmt.Fprintf(w, "roofline:")
	for _, p := range r.Prefill {
		fmt.Fprintf(w, " prefill %d at %.0f%% of FMA peak;", p.Tokens, 100*p.GFLOPs/mc.FMAGFLOPs)
	}
	if r.Decode.Tokens > 0 {
		fmt.Fprintf(w, " decode weights at %.0f%% of read bandwidth", 100*r.Decode.GBs/mc.ReadGBs)
	}
	fmt.Fprintln(w)
}
