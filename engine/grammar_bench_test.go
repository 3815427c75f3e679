package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/grammar"
	"github.com/kvserve/kvserve/kvcache"
)

// vocabGrammar binds a grammar to a vocabulary, as the server does.
type vocabGrammar struct {
	g *grammar.Grammar
	v *grammar.Vocab
}

func (b vocabGrammar) NewMatcher() Matcher { return b.g.NewMatcher(b.v) }

// BenchmarkSchedulerDecodeGrammar is BenchmarkSchedulerDecode sampled at
// temperature 1, free ("free") and with the output constrained to a JSON
// array of at least 1000 strings of at most 8 characters ("json": every
// request writes 256 tokens, strings ending and starting): the rates'
// difference is what the grammar costs per token, mask and all. Run with
//
//	go test ./engine -run '^$' -bench 'SchedulerDecodeGrammar' -benchtime 4x
func BenchmarkSchedulerDecodeGrammar(b *testing.B) {
	pool := compute.NewPool(0)
	defer pool.Close()
	bundle, err := Open("", pool)
	if err != nil {
		b.Fatal(err)
	}
	defer bundle.Close()
	t := bundle.Tokenizer
	v := grammar.NewVocab(bundle.Net.Config.VocabSize, t.TokenBytes, t.IsSpecial)
	g, err := grammar.FromSchema([]byte(`{"type":"array","items":{"type":"string","maxLength":8},"minItems":1000}`))
	if err != nil {
		b.Fatal(err)
	}
	ids := t.Encode(strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 40))
	s := NewScheduler(bundle, SchedulerConfig{Cache: NewPrefixCache(bundle.Net, kvcache.PoolConfig{Budget: 1 << 30})})
	defer s.Close()
	for _, constrained := range []bool{false, true} {
		name := "free"
		var gr Grammar
		if constrained {
			name, gr = "json", vocabGrammar{g, v}
		}
		b.Run(name, func(b *testing.B) { decodeRate(b, s, ids, gr) })
	}
}

// decodeRate runs requests of 256 sampled tokens and reports the rate of
// the tokens after the first.
func decodeRate(b *testing.B, s *Scheduler, ids []int, g Grammar) {
	var decoding time.Duration
	tokens := 0
	for i := 0; b.Loop(); i++ {
		st, err := s.Submit(context.Background(), Job{Prompt: append([]int{16 + i%100}, ids...), MaxTokens: 256,
			IgnoreEOS: g == nil, Sampling: Sampling{Temperature: 1, Seed: uint64(i)}, Grammar: g})
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
			} else if ev.Token >= 0 {
				tokens++
			}
		}
		decoding += time.Since(first)
	}
	b.ReportMetric(float64(tokens)/decoding.Seconds(), "decode-tok/s")
}
