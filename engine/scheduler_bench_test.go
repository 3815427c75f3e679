package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// BenchmarkSchedulerDecode times one request alone in the scheduler, with
// a prefix cache as kvserve serve has: a ~560-token prompt, then 256
// greedy tokens. It reports the decoding rate after the first token, to
// set beside the model's bare decode step (BenchmarkDecodeStep in
// ./model): the difference is what the scheduler costs per token.
func BenchmarkSchedulerDecode(b *testing.B) {
	pool := compute.NewPool(0)
	defer pool.Close()
	bundle, err := Open("", pool)
	if err != nil {
		b.Fatal(err)
	}
	defer bundle.Close()
	ids := bundle.Tokenizer.Encode(strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 40))
	s := NewScheduler(bundle, SchedulerConfig{Cache: NewPrefixCache(bundle.Net, kvcache.PoolConfig{Budget: 1 << 30})})
	defer s.Close()
	const n = 256
	var decoding time.Duration
	for i := 0; b.Loop(); i++ {
		st, err := s.Submit(context.Background(), Job{Prompt: append([]int{16 + i%100}, ids...), MaxTokens: n, IgnoreEOS: true})
		if err != nil {
			b.Fatal(err)
		}
		var first time.Time
		for {
			ev, err := st.Recv(context.Background())
			if err != nil || ev.Err != nil {
				break
			}
			if first.IsZero() {
				first = time.Now()
			}
		}
		decoding += time.Since(first)
	}
	b.ReportMetric(float64((n-1)*b.N)/decoding.Seconds(), "decode-tok/s")
}
