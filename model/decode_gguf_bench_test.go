package model

import (
	"fmt"
	"os"
	"testing"

	"github.com/kvserve/kvserve/compute"
)

// BenchmarkDecodeBatchGGUF times one batched decode step of the GGUF model
// named by $KVSERVE_BENCH_GGUF (e.g. the issue-13 bench model
// /tmp/kvserve-bench/llama-1b-q8_0.gguf) in Fast numerics, for 1, 2, 4 and
// 8 sequences of 100 cached tokens each: how much more a step of B
// sequences costs than a step of one. Skipped without the variable.
func BenchmarkDecodeBatchGGUF(b *testing.B) {
	path := os.Getenv("KVSERVE_BENCH_GGUF")
	if path == "" {
		b.Skip("set KVSERVE_BENCH_GGUF to a GGUF model file")
	}
	m, _, err := LoadGGUF(path, testPool)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	m.SetNumerics(compute.Fast)
	c := m.Config
	const ctx = 100
	for _, batch := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprint(batch), func(b *testing.B) {
			steps := make([]Step, batch)
			for i := range steps {
				cache := m.NewCache()
				defer cache.Release()
				prompt := make([]int, ctx)
				for j := range prompt {
					prompt[j] = 16 + (j*37+i*101)%(c.VocabSize-16)
				}
				if _, err := m.Forward(cache, prompt, NoLogits); err != nil {
					b.Fatal(err)
				}
				steps[i] = Step{Cache: cache, Tokens: []int{42 + i}, Output: LastLogits, Logits: make([]float32, c.VocabSize)}
			}
			step := func() {
				if err := m.ForwardBatch(steps); err != nil {
					b.Fatal(err)
				}
				for _, s := range steps {
					if err := s.Cache.Truncate(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			step()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				step()
			}
			b.ReportMetric(float64(batch)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
