package bench

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
)

// TestReuse runs one rag_chain record of the bundled rag.jsonl through
// full prefill and three reuse methods and checks what a run reports.
func TestReuse(t *testing.T) {
	recs, err := ReadRecords("testdata/rag.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	recs = Filter(recs, []string{"rag_chain"}, nil, 1)
	if len(recs) != 1 || len(recs[0].Documents) == 0 {
		t.Fatalf("no rag_chain record with documents in testdata/rag.jsonl")
	}
	pool := compute.NewPool(0)
	defer pool.Close()
	b, err := engine.Open("", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	configs := []ReuseConfig{{Method: "full"}, {Method: "naive"}, {Method: "cacheblend"}, {Method: "pie"}}
	runs, err := Reuse(context.Background(), b, recs, configs, 0, AccuracyOptions{MaxNewTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != len(configs) {
		t.Fatalf("%d runs, want %d", len(runs), len(configs))
	}
	docTokens := 0
	for _, d := range recs[0].Documents {
		docTokens += len(b.Tokenizer.Encode(d.Text))
	}
	for i, run := range runs {
		if run.Reuse != configs[i].Method || run.Total != 1 || run.MeanTTFTms <= 0 || run.Records[0].Task != "rag_chain" || run.Records[0].ReuseRecord == nil {
			t.Errorf("run %d: %+v", i, run.ReuseStats)
		}
	}
	if runs[0].ReusedTokens != 0 || runs[1].ReusedTokens != float64(docTokens) {
		t.Errorf("reused tokens: full %g, naive %g; want 0 and %d (every document, warmed first)", runs[0].ReusedTokens, runs[1].ReusedTokens, docTokens)
	}
	if want := math.Ceil(0.15 * float64(docTokens)); runs[2].RecomputeRatio != 0.15 || runs[2].RecomputedTokens != want {
		t.Errorf("cacheblend recompute ratio %g, %g tokens; want 0.15, %g", runs[2].RecomputeRatio, runs[2].RecomputedTokens, want)
	}
	buf, _ := json.Marshal(Report{Runs: runs})
	for _, key := range []string{`"reuse":"cacheblend"`, `"recompute_ratio":0.15`, `"recomputed_tokens"`, `"mean_ttft_ms"`, `"task":"rag_chain"`, `"warm":`} {
		if !strings.Contains(string(buf), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	var sb strings.Builder
	ReuseTable(&sb, runs)
	if !strings.Contains(sb.String(), "cacheblend") || !strings.Contains(sb.String(), "1.00×") {
		t.Errorf("table:\n%s", sb.String())
	}
}
