package press_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
)

// quantRun is one press's outcome on one record.
type quantRun struct {
	answer        string
	stored, full  int64 // the compressed context's bytes; a bf16 cache of it
	contextTokens int
}

// runQuantPresses prefills a record's context once (the question unseen,
// as in bench.Accuracy), compresses a fork of it with each press
// (Compress: eviction, then quantization), and answers the first turn
// greedily.
func runQuantPresses(t *testing.T, b *engine.Bundle, r *bench.Record, presses []*press.Press) []quantRun {
	t.Helper()
	text, err := b.ChatPrompt(bench.TurnMessages(r, 1))
	if err != nil {
		t.Fatal(err)
	}
	ids := b.Tokenizer.Encode(text)
	end := strings.Index(text, r.Context)
	if end < 0 {
		t.Fatal("context not in the prompt")
	}
	ctxIDs := b.Tokenizer.Encode(text[:end+len(r.Context)])
	split := 0
	for split < len(ctxIDs) && split < len(ids) && ctxIDs[split] == ids[split] {
		split++
	}
	pool := b.Net.NewPool(0, kvcache.BF16)
	base := pool.NewSeq()
	defer base.Release()
	obs := press.Observer(presses, 0, split)
	if _, err := b.Net.ForwardObserved(base, ids[:split], model.NoLogits, obs); err != nil {
		t.Fatal(err)
	}
	c := b.Net.Config
	var out []quantRun
	for _, p := range presses {
		seq, err := base.Fork(split)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Compress(b.Net, seq, obs); err != nil {
			t.Fatal(err)
		}
		run := quantRun{stored: seq.StoredBytes(), full: int64(split * c.Layers * c.KVHeads * c.HeadDim * 2 * 2), contextTokens: split}
		res, err := b.Generate(context.Background(), seq, engine.Request{Prompt: ids, MaxTokens: 40}, nil)
		if err != nil {
			t.Fatal(err)
		}
		run.answer = strings.TrimSpace(b.Tokenizer.Decode(res.Output))
		seq.Release()
		out = append(out, run)
	}
	return out
}

// TestKIVIOnTinychat compresses one dev record's context with kivi4,
// kivi2 and keydiff+kivi4 at 0.5 and checks that tinychat still answers,
// as kvpress's KIVI-style fake quantization does on the same record
// (bench/testdata/kvpress-quant-dev.jsonl), and that the sealed cache
// holds the bytes the format says.
func TestKIVIOnTinychat(t *testing.T) {
	recs, err := bench.ReadRecords("../bench/testdata/dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	recs = bench.Filter(recs, []string{"niah_single"}, []int{1000}, 1)
	if len(recs) != 1 || recs[0].ID != "niah_single-1000-0" {
		t.Fatalf("filter kept %d records", len(recs))
	}
	ref, err := bench.ReadReference("../bench/testdata/kvpress-quant-dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	refAnswer := map[string]string{}
	for _, a := range ref {
		if a.ID == recs[0].ID {
			refAnswer[a.Press] = strings.TrimSpace(a.Answer)
		}
	}
	pool := compute.NewPool(0)
	defer pool.Close()
	b, err := engine.Open("", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cases := []struct{ name, refName string }{
		{"kivi4", "kivi4"},
		{"kivi2", "kivi2"},
		{"keydiff+kivi4", "keydiff0.5+kivi4"},
	}
	var presses []*press.Press
	for _, tc := range cases {
		p, err := press.Parse(tc.name, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		presses = append(presses, p)
	}
	runs := runQuantPresses(t, b, &recs[0], presses)
	want := strings.TrimSpace(recs[0].Turns[0].Answer)
	c := b.Net.Config
	heads := int64(c.Layers * c.KVHeads)
	cfg := kvcache.PoolConfig{Layers: c.Layers, KVHeads: c.KVHeads, HeadDim: c.HeadDim, BlockTokens: kvcache.DefaultBlockTokens}
	full := int64(kvcache.DefaultBlockTokens * (2*c.HeadDim*2 + 4)) // a bf16 block
	for i, tc := range cases {
		r := runs[i]
		t.Logf("%s: %q, %d context tokens stored in %.3f of bf16's bytes", tc.name, r.answer, r.contextTokens, float64(r.stored)/float64(r.full))
		if r.answer != want || r.answer != refAnswer[tc.refName] {
			t.Errorf("%s answered %q; want %q (kvpress: %q)", tc.name, r.answer, want, refAnswer[tc.refName])
		}
		n := r.contextTokens
		if tc.name != "kivi4" && tc.name != "kivi2" {
			n = int(float64(n) * 0.5) // Uniform keeps ⌊n·(1 − ratio)⌋ per head
		}
		f := kvcache.Int4
		if tc.name == "kivi2" {
			f = kvcache.Int2
		}
		sealed := int64(max(0, n-kvcache.DefaultResidual) / kvcache.DefaultBlockTokens)
		blocks := int64((n + kvcache.DefaultBlockTokens - 1) / kvcache.DefaultBlockTokens)
		if wantBytes := heads * (sealed*kvcache.QuantBlockBytes(cfg, f) + (blocks-sealed)*full); r.stored != wantBytes {
			t.Errorf("%s: %d bytes stored, want %d", tc.name, r.stored, wantBytes)
		}
	}
}
