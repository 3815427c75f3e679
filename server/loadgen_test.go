package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
)

// TestLoadWithCancellations runs the load generator against the server
// with random cancellations and a KV budget small enough that the prefix
// cache must evict: every request is accounted for, second turns hit the
// cache, and after the run and a flush of the prefix cache the block pool
// is back to full and no goroutine is left.
func TestLoadWithCancellations(t *testing.T) {
	b := tinychat(t) // its worker pool lives as long as the package's tests
	before := runtime.NumGoroutine()
	// Room for the four running conversations and about two kept ones.
	budget := 6 * engine.NewPoolCache(b.Net, kvcache.PoolConfig{}).SeqBytes(100)
	ts := startBudget(t, engine.SchedulerConfig{MaxBatch: 4}, budget)
	var convs []bench.Conversation
	for i := range 6 {
		ctx := fmt.Sprintf("package p%d\n\nfunc F%d(x int) int { return x * %d }\n", i, i, i+2)
		sys := bench.Message{Role: "system", Content: "You are a helpful assistant."}
		q1 := bench.Message{Role: "user", Content: ctx + "\nWhat does F" + fmt.Sprint(i) + " return?"}
		a1 := bench.Message{Role: "assistant", Content: "x times something"}
		q2 := bench.Message{Role: "user", Content: "And for x = 3?"}
		convs = append(convs, bench.Conversation{ID: fmt.Sprint(i), Turns: [][]bench.Message{{sys, q1}, {sys, q1, a1, q2}}})
	}
	client := &http.Client{Transport: &http.Transport{}}
	rep, err := bench.RunLoad(context.Background(), bench.LoadOptions{
		URL: ts.URL, Model: "tinychat", Conversations: convs, Concurrency: 4,
		MaxTokens: 12, IgnoreEOS: true, CancelRate: 0.4, Seed: 3, Client: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	tot := rep.Total
	if tot.Requests != tot.Completed+tot.Cancelled+tot.Fail || tot.Fail != 0 || tot.Completed == 0 || tot.Cancelled == 0 {
		t.Errorf("totals %+v, errors %q", tot, rep.Errors)
	}
	if tot.CompletionTokens != 12*tot.Completed || len(rep.Turns) != 2 || len(tot.TTFT) != tot.Completed {
		t.Errorf("%d tokens over %d completed requests, %d turns, %d TTFTs", tot.CompletionTokens, tot.Completed, len(rep.Turns), len(tot.TTFT))
	}
	if rep.Turns[1].HitRate() < 0.5 {
		t.Errorf("second turns found %.0f%% of their prompts cached", 100*rep.Turns[1].HitRate())
	}
	if kv := ts.sched.Stats().KV; kv.PrefixEvictions == 0 || kv.UsedBytes > budget {
		t.Errorf("no eviction under a budget of %d bytes, or over it: %+v", budget, kv)
	}
	var buf bytes.Buffer
	rep.Table(&buf)
	if !strings.Contains(buf.String(), "TTFT p50 ms") || !strings.Contains(buf.String(), "all") {
		t.Errorf("table:\n%s", buf.String())
	}
	if !ts.idle() {
		used, _ := ts.cache.Pool().Stats()
		t.Errorf("after the load and a flush: %d blocks still in use; %+v", used, ts.sched.Stats())
	}
	client.CloseIdleConnections()
	ts.close()
	if !settle(func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}
