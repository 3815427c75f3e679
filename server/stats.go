package server

import (
	"context"
	"log/slog"
	"time"
)

// LogStats writes a "stats" line every interval while the server has had
// work in it: sequences running and waiting, prompt and generated tokens
// per second, KV memory in use and the prefix hit rate over the interval.
// It returns when ctx ends.
func (s *Server) LogStats(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	m := s.metrics
	last := time.Now()
	prompt, cached, prefill, gen := m.promptTokens.Value(), m.cachedTokens.Value(), m.prefillTokens.Value(), m.genTokens.Value()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			st := s.sched.Stats()
			p, c, pf, g := m.promptTokens.Value(), m.cachedTokens.Value(), m.prefillTokens.Value(), m.genTokens.Value()
			if st.Running == 0 && st.Queued == 0 && g == gen && pf == prefill {
				last = now
				continue // idle: nothing to say
			}
			secs := now.Sub(last).Seconds()
			attrs := []slog.Attr{
				slog.Int("running", st.Running), slog.Int("waiting", st.Queued),
				slog.Float64("prompt_tokens_per_s", round1((pf-prefill)/secs)),
				slog.Float64("generation_tokens_per_s", round1((g-gen)/secs)),
				slog.Int64("kv_used_bytes", st.KV.UsedBytes),
			}
			if st.KV.Capacity > 0 {
				attrs = append(attrs, slog.Float64("kv_used_pct", round1(100*float64(st.KV.UsedBytes)/float64(st.KV.Capacity))))
			}
			if p > prompt {
				attrs = append(attrs, slog.Float64("prefix_hit_pct", round1(100*(c-cached)/(p-prompt))))
			}
			s.log.LogAttrs(ctx, slog.LevelInfo, "stats", attrs...)
			last, prompt, cached, prefill, gen = now, p, c, pf, g
		}
	}
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
