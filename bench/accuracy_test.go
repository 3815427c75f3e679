package bench

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/internal/chart"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/press"
)

// TestAccuracyMatchesReference runs the harness on two short records, both
// turns, and checks the first-turn answers against kvpress's full-cache
// answers for the same records (transformers underneath).
func TestAccuracyMatchesReference(t *testing.T) {
	recs, err := ReadRecords("testdata/dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	recs = Filter(recs, []string{"niah_multikey", "code_signature"}, []int{1000}, 1)
	if len(recs) != 2 {
		t.Fatalf("filter kept %d records", len(recs))
	}
	pool := compute.NewPool(0)
	defer pool.Close()
	b, err := engine.Open("", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	runs, err := Accuracy(context.Background(), b, recs, nil, AccuracyOptions{Turns: 2})
	if err != nil {
		t.Fatal(err)
	}
	run := runs[0]
	if len(run.Records) != 4 || run.Total != 4 {
		t.Fatalf("%d records, total %d; want 2 records × 2 turns", len(run.Records), run.Total)
	}
	ref, err := ReadReference("testdata/kvpress-dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	both, same, diffs := CompareAnswers(run, ref)
	if both != 2 || same != 2 {
		t.Errorf("%d of %d answers match the reference: %+v", same, both, diffs)
	}
	// tinychat: 2 × 8 layers × 2 KV heads × 64 × 2 bytes per token.
	if want := run.Records[0].PromptTokens * 4096; run.FullKVBytes == 0 || run.Records[0].KVBytes < int64(want) {
		t.Errorf("kv bytes %d (full %d) for %d prompt tokens", run.Records[0].KVBytes, run.FullKVBytes, run.Records[0].PromptTokens)
	}
	var sb strings.Builder
	run.Table(&sb)
	if !strings.Contains(sb.String(), "niah_multikey") {
		t.Errorf("table lacks a task row:\n%s", sb.String())
	}
}

// TestPressesShareThePrefill runs the full cache and two presses over one
// prefill (computed layer by layer, over more than one chunk) and checks
// their answers against kvpress's, that the compressed caches hold about
// half the bytes and that their peak stayed within the final bytes and one
// layer.
func TestPressesShareThePrefill(t *testing.T) {
	recs, b := tinychatOn(t, "niah_single", 2)
	var presses []*press.Press
	for _, name := range []string{"", "keydiff", "streaming_llm"} {
		if name == "" {
			presses = append(presses, nil)
			continue
		}
		p, err := press.New(name, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		presses = append(presses, p)
	}
	runs, err := Accuracy(context.Background(), b, recs, presses, AccuracyOptions{Turns: 1, Format: kvcache.BF16})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ReadReference("testdata/kvpress-dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range runs {
		both, same, diffs := CompareAnswers(run, ref)
		if both != 2 || same != 2 {
			t.Errorf("%s: %d of %d answers match kvpress: %+v", run.Press, same, both, diffs)
		}
		ratio := float64(run.KVBytes) / float64(run.FullKVBytes)
		want := 1.0
		if run.Press != "none" {
			want = 0.5
		}
		// bf16 storage: bytes/full ≈ 1 − ratio, plus positions and partly
		// filled blocks.
		if ratio < want || ratio > want+0.06 {
			t.Errorf("%s: KV bytes %.3f of full, want about %.2f", run.Press, ratio, want)
		}
		// Compressed layer by layer, a cache never holds more than its
		// final bytes and one full layer (8 layers: 1/8 of the full cache).
		for _, r := range run.Records {
			if r.PeakKVBytes <= 0 || r.LayerKVBytes <= 0 || float64(r.PeakKVBytes) > 1.1*float64(r.KVBytes+r.LayerKVBytes) {
				t.Errorf("%s %s: peak %d bytes, final %d + one layer %d", run.Press, r.ID, r.PeakKVBytes, r.KVBytes, r.LayerKVBytes)
			}
			if run.Press != "none" && float64(r.PeakKVBytes) > 0.7*float64(run.FullKVBytes) {
				t.Errorf("%s %s: peak %d bytes, near the full cache's %d", run.Press, r.ID, r.PeakKVBytes, run.FullKVBytes)
			}
		}
	}
}

// TestCompositionPeak checks that an eviction composed with a
// quantization stage (quantized layer by layer, right after each layer's
// eviction) peaks within its final bytes and one full layer (+10 %), as
// the eviction alone does.
func TestCompositionPeak(t *testing.T) {
	recs, b := tinychatOn(t, "niah_single", 1)
	var presses []*press.Press
	for _, name := range []string{"keydiff+kivi4", "snapkv+think", "cake+kivi4"} {
		p, err := press.Parse(name, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		presses = append(presses, p)
	}
	runs, err := Accuracy(context.Background(), b, recs, presses, AccuracyOptions{Turns: 1, Format: kvcache.BF16})
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range runs {
		for _, r := range run.Records {
			t.Logf("%s %s: full %d, final %d, peak %d, one layer %d", run.Press, r.ID, run.FullKVBytes, r.KVBytes, r.PeakKVBytes, r.LayerKVBytes)
			if r.KVBytes <= 0 || r.LayerKVBytes <= 0 || float64(r.PeakKVBytes) > 1.1*float64(r.KVBytes+r.LayerKVBytes) {
				t.Errorf("%s %s: peak %d bytes, final %d + one layer %d", run.Press, r.ID, r.PeakKVBytes, r.KVBytes, r.LayerKVBytes)
			}
		}
	}
}

func TestTurnMessages(t *testing.T) {
	r := &Record{System: "sys", Context: "CTX", Turns: []Turn{{"q1", "a1"}, {"q2", "a2"}}}
	msgs := TurnMessages(r, 2)
	var got []string
	for _, m := range msgs {
		got = append(got, m.Role+":"+m.Content)
	}
	want := "system:sys|user:CTX\n\nq1|assistant:a1|user:q2"
	if strings.Join(got, "|") != want {
		t.Errorf("got %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestCompareBaseline(t *testing.T) {
	run := &Run{Press: "none", Records: []RecordResult{
		{ID: "a", Task: "t", TargetTokens: 1000, Turn: 1, Correct: true},
		{ID: "b", Task: "t", TargetTokens: 1000, Turn: 1},
		{ID: "c", Task: "t", TargetTokens: 1000, Turn: 1, Skipped: true},
	}}
	base := &Baseline{Cells: []BaselineCell{{Task: "t", TargetTokens: 1000, Turn: 0, Correct: 2, N: 3}, {Task: "u", TargetTokens: 1000}}}
	d := CompareBaseline(run, base)
	if len(d) != 1 || d[0].Ours != 1 || d[0].OursN != 2 || d[0].Skipped != 1 || d[0].Theirs != 2 {
		t.Fatalf("diff %+v", d)
	}
	ref := []ReferenceAnswer{{Press: "none", ID: "a", Answer: " x "}, {Press: "none", ID: "c", Answer: "y"}, {Press: "snapkv", ID: "a"}}
	run.Records[0].Answer = "x"
	both, same, diffs := CompareAnswers(run, ref)
	if both != 2 || same != 1 || len(diffs) != 1 || !diffs[0].Skipped {
		t.Fatalf("both %d same %d diffs %+v", both, same, diffs)
	}
}

func TestPlotAccuracy(t *testing.T) {
	rep := &Report{Runs: []*Run{
		{Press: "none", KVBytes: 100, FullKVBytes: 100, Correct: 5, Total: 10},
		{Press: "keydiff", Ratio: 0.5, KVBytes: 52, FullKVBytes: 100, Correct: 4, Total: 10},
		{Press: "keydiff", Ratio: 0.75, KVBytes: 27, FullKVBytes: 100, Correct: 2, Total: 10},
	}}
	path := t.TempDir() + "/p.png"
	if err := PlotAccuracy(rep, "test", path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 1000 || string(data[1:4]) != "PNG" {
		t.Fatalf("plot file: %d bytes, err %v", len(data), err)
	}
	if err := PlotAccuracy(&Report{}, "empty", path); err == nil {
		t.Error("plot of no runs succeeded")
	}
}

// TestQueryAware compresses the same records before and after the
// question is in the cache: query-aware, the question's tokens are
// compressed too, so the cache holds fewer bytes at the same ratio, and
// SnapKV's window of last queries — now the question's — finds at least
// as many answers.
func TestQueryAware(t *testing.T) {
	recs, b := tinychatOn(t, "niah_single", 2)
	run := func(aware bool) *Run {
		p, err := press.Parse("snapkv", 0.75)
		if err != nil {
			t.Fatal(err)
		}
		runs, err := Accuracy(context.Background(), b, recs, []*press.Press{p}, AccuracyOptions{Turns: 1, QueryAware: aware})
		if err != nil {
			t.Fatal(err)
		}
		return runs[0]
	}
	agnostic, aware := run(false), run(true)
	if !aware.QueryAware || agnostic.QueryAware {
		t.Errorf("query_aware flags: %v, %v", agnostic.QueryAware, aware.QueryAware)
	}
	if aware.KVBytes >= agnostic.KVBytes {
		t.Errorf("query-aware cache holds %d bytes, query-agnostic %d: the question was not compressed", aware.KVBytes, agnostic.KVBytes)
	}
	if aware.Correct < agnostic.Correct {
		t.Errorf("query-aware SnapKV found %d answers, query-agnostic %d", aware.Correct, agnostic.Correct)
	}
	t.Logf("snapkv@0.75 on %d records: query-agnostic %d correct in %d B, query-aware %d in %d B", len(recs), agnostic.Correct, agnostic.KVBytes, aware.Correct, aware.KVBytes)
}

// tinychatOn returns per records of task at length 1000 from dev.jsonl and
// the bundled model, closed when the test ends.
func tinychatOn(t *testing.T, task string, per int) ([]Record, *engine.Bundle) {
	t.Helper()
	recs, err := ReadRecords("testdata/dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	pool := compute.NewPool(0)
	t.Cleanup(pool.Close)
	b, err := engine.Open("", pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return Filter(recs, []string{task}, []int{1000}, per), b
}

func TestParetoFrontAndFamily(t *testing.T) {
	front := ParetoFront([]chart.Point{{X: 0.5, Y: 0.8}, {X: 0.27, Y: 0.5}, {X: 0.52, Y: 0.7}, {X: 0.14, Y: 0.6}, {X: 0.9, Y: 0.8}})
	want := []chart.Point{{X: 0.14, Y: 0.6}, {X: 0.5, Y: 0.8}}
	if !reflect.DeepEqual(front, want) {
		t.Errorf("front %v, want %v", front, want)
	}
	for press, fam := range map[string]string{
		"keydiff": "keydiff", "adakv_keydiff_sinks+kivi4r32": "adakv_keydiff_sinks+quant", "kivi4": "quant only",
		"gear3r32": "quant only", "none": "none", "threshold_snapkv": "threshold_snapkv",
	} {
		if got := Family(press); got != fam {
			t.Errorf("Family(%q) = %q, want %q", press, got, fam)
		}
	}
}

func TestSummary(t *testing.T) {
	runs := []*Run{
		{Press: "none", KVBytes: 100, FullKVBytes: 100, Correct: 10, Total: 20, Seconds: 2},
		{Press: "keydiff", KVBytes: 52, FullKVBytes: 100, Correct: 8, Total: 20, Seconds: 1},
		{Press: "keydiff", KVBytes: 24, FullKVBytes: 100, Correct: 5, Total: 20, Seconds: 1},
		{Press: "keydiff+kivi4", KVBytes: 12, FullKVBytes: 100, Correct: 6, Total: 20, Seconds: 3},
	}
	var b strings.Builder
	Summary(&b, runs)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"full cache: 10/20 correct (50.0 %), 2.0 s",
		"keydiff+quant                         -    60%    60%    60%    60%     1      3.0",
		"keydiff                               -      -    50%    80%    80%     2      2.0", // 0.52 is within 1/2 + 5 %
	}
	if len(lines) != 4 || !strings.HasPrefix(lines[0], want[0]) || lines[2] != want[1] || lines[3] != want[2] {
		t.Errorf("summary:\n%s", b.String())
	}
}

// TestCompareUnevenRecordSets: a result of one record per cell against a
// 16-record baseline is compared in accuracy points, with a warning, not
// as a difference of counts.
func TestCompareUnevenRecordSets(t *testing.T) {
	base := &Baseline{Cells: []BaselineCell{{Task: "niah_single", TargetTokens: 1000, Turn: 0, Correct: 12, N: 16}}}
	tests := []struct {
		name    string
		records []RecordResult
		want    []string
	}{
		{"one of sixteen", []RecordResult{{Task: "niah_single", TargetTokens: 1000, Turn: 1, Correct: true}},
			[]string{"warning: in 1 of 1 cells", "+25", "largest |Δ| in a cell: 25 accuracy points"}},
		{"same set", repeatRecords(16, 12), []string{"largest |Δ| in a cell: 0\n"}},
	}
	for _, tt := range tests {
		var b strings.Builder
		WriteComparison(&b, &Report{Runs: []*Run{{Press: "none", Records: tt.records}}}, base, nil, false)
		for _, w := range tt.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, b.String())
			}
		}
	}
}

// repeatRecords returns n first-turn niah_single-1000 records, the first
// correct ones right.
func repeatRecords(n, correct int) []RecordResult {
	out := make([]RecordResult, n)
	for i := range out {
		out[i] = RecordResult{Task: "niah_single", TargetTokens: 1000, Turn: 1, Correct: i < correct}
	}
	return out
}
