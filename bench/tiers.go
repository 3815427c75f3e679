package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/codec"
	"github.com/kvserve/kvserve/kvcache/store"
)

// TierOptions configures a tier TTFT run.
type TierOptions struct {
	// Levels are the codec levels the tiers are measured with.
	Levels []codec.Level
	// RedisURL, if set, adds a Redis tier row per level.
	RedisURL string
	// ChunkTokens is the store's chunk (256 if 0).
	ChunkTokens int
	// Format is the pool's format.
	Format kvcache.Format
	// Repeat is how many fresh readers each tier row times (3 if 0); the
	// median is reported.
	Repeat int
	// Progress, if set, receives a line per measurement.
	Progress io.Writer
}

// TierRow is one way of getting a turn's shared context into memory.
type TierRow struct {
	Source string  `json:"source"` // recompute, prefix tree, memory, disk, redis
	Level  string  `json:"level,omitempty"`
	TTFTMs float64 `json:"ttft_ms"` // median
	// CachedTokens of PromptTokens were found instead of computed.
	CachedTokens int `json:"cached_tokens"`
	PromptTokens int `json:"prompt_tokens"`
	// StoredBytes is what the first turn's chunks take in the tier.
	StoredBytes int64 `json:"stored_bytes,omitempty"`
	// StoredTokens is the tokens of those chunks.
	StoredTokens int       `json:"stored_tokens,omitempty"`
	Runs         []float64 `json:"runs_ms"`
}

// TierTTFT measures the time to first token of turn 2 of a conversation —
// a long shared context asked a second question — when its context is
// recomputed, found in the prefix tree of the same process, or loaded by a
// fresh process (new pool, new store client) from each tier where an
// earlier process left turn 1: host memory, disk, Redis. turn1 and turn2
// are the prompts' token ids.
func TierTTFT(ctx context.Context, b *engine.Bundle, turn1, turn2 []int, opt TierOptions) ([]*TierRow, error) {
	if opt.Repeat <= 0 {
		opt.Repeat = 3
	}
	if opt.ChunkTokens <= 0 {
		opt.ChunkTokens = 256
	}
	pcfg := kvcache.PoolConfig{Format: opt.Format}
	say := func(format string, a ...any) {
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, format+"\n", a...)
		}
	}
	ns := fmt.Sprintf("%s-bench-%d/%s", b.Name, time.Now().UnixNano(), opt.Format)
	var rows []*TierRow
	// ttft runs job on a new scheduler over cache and returns its TTFT and
	// the cached prompt tokens.
	ttft := func(cache engine.CacheAllocator, prompt []int, close func()) (time.Duration, int, error) {
		s := engine.NewScheduler(b, engine.SchedulerConfig{Cache: cache})
		defer func() {
			s.Close()
			if close != nil {
				close()
			}
		}()
		start := time.Now()
		st, err := s.Submit(ctx, engine.Job{Prompt: prompt, MaxTokens: 1, IgnoreEOS: true})
		if err != nil {
			return 0, 0, err
		}
		var first time.Duration
		for {
			ev, err := st.Recv(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, 0, err
			}
			if ev.Err != nil {
				return 0, 0, ev.Err
			}
			if ev.Token >= 0 && first == 0 {
				first = time.Since(start)
			}
		}
		return first, st.Usage().CachedTokens, nil
	}
	record := func(row *TierRow, d time.Duration, cached int) {
		row.Runs = append(row.Runs, float64(d.Microseconds())/1000)
		row.CachedTokens, row.PromptTokens = cached, len(turn2)
		say("%-12s %-5s %8.1f ms  %d of %d tokens cached", row.Source, row.Level, float64(d.Microseconds())/1000, cached, len(turn2))
	}

	// Recompute: a fresh process with nothing stored.
	row := &TierRow{Source: "recompute"}
	for range opt.Repeat {
		d, c, err := ttft(engine.NewPrefixCache(b.Net, pcfg), turn2, nil)
		if err != nil {
			return nil, err
		}
		record(row, d, c)
	}
	rows = append(rows, row)

	// The prefix tree of the process that answered turn 1.
	row = &TierRow{Source: "prefix tree"}
	for range opt.Repeat {
		pc := engine.NewPrefixCache(b.Net, pcfg)
		s := engine.NewScheduler(b, engine.SchedulerConfig{Cache: pc})
		if err := runOnce(ctx, s, turn1); err != nil {
			s.Close()
			return nil, err
		}
		s.Close()
		d, c, err := ttft(pc, turn2, nil)
		if err != nil {
			return nil, err
		}
		record(row, d, c)
	}
	rows = append(rows, row)

	for _, level := range opt.Levels {
		mem := store.NewMemory(0)
		dir, err := os.MkdirTemp("", "kvserve-bench-tiers-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		type tierMaker struct {
			name string
			open func() (store.Tier, error)
		}
		makers := []tierMaker{
			{"memory", func() (store.Tier, error) { return mem, nil }},
			{"disk", func() (store.Tier, error) { return store.OpenDisk(dir, 0) }},
		}
		if opt.RedisURL != "" {
			prefix := fmt.Sprintf("kvserve-bench-%d:", time.Now().UnixNano())
			makers = append(makers, tierMaker{"redis", func() (store.Tier, error) {
				return store.OpenRedis(store.RedisOptions{URL: opt.RedisURL, Prefix: prefix, TTL: time.Hour, Timeout: time.Second})
			}})
		}
		for _, m := range makers {
			open := func() (*engine.TieredCache, *store.Store, error) {
				t, err := m.open()
				if err != nil {
					return nil, nil, err
				}
				if m.name == "memory" {
					t = keepOpen{t} // one Memory shared by writer and readers
				}
				st := store.New(store.Options{Tiers: []store.Tier{t}})
				return engine.NewTieredCache(engine.NewPrefixCache(b.Net, pcfg), engine.TierConfig{
					Store: st, Level: level, ChunkTokens: opt.ChunkTokens, Namespace: ns}), st, nil
			}
			// The writer: answers turn 1, its chunks go down.
			tc, st, err := open()
			if err != nil {
				return nil, fmt.Errorf("%s tier: %w", m.name, err)
			}
			s := engine.NewScheduler(b, engine.SchedulerConfig{Cache: tc})
			err = runOnce(ctx, s, turn1)
			s.Close()
			st.Close()
			if err != nil {
				return nil, err
			}
			row := &TierRow{Source: m.name, Level: level.String(), StoredBytes: st.Stats()[0].BytesWritten,
				StoredTokens: len(turn1) / opt.ChunkTokens * opt.ChunkTokens}
			for range opt.Repeat {
				tc, st, err := open()
				if err != nil {
					return nil, err
				}
				d, c, err := ttft(tc, turn2, func() { st.Close() })
				if err != nil {
					return nil, err
				}
				record(row, d, c)
			}
			rows = append(rows, row)
		}
	}
	for _, r := range rows {
		r.TTFTMs = median(r.Runs)
	}
	return rows, nil
}

// keepOpen is a tier whose Close does nothing, for a memory tier that
// outlives the stores it serves.
type keepOpen struct{ store.Tier }

func (keepOpen) Close() error { return nil }

func runOnce(ctx context.Context, s *engine.Scheduler, prompt []int) error {
	st, err := s.Submit(ctx, engine.Job{Prompt: prompt, MaxTokens: 1, IgnoreEOS: true})
	if err != nil {
		return err
	}
	for {
		ev, err := st.Recv(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if ev.Err != nil {
			return ev.Err
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TierTable prints the rows with each one's speed-up over recomputing.
func TierTable(w io.Writer, rows []*TierRow) {
	base := 0.0
	if len(rows) > 0 {
		base = rows[0].TTFTMs
	}
	fmt.Fprintf(w, "| context from | codec | TTFT ms (median) | × faster than recompute | cached tokens | stored bytes | bytes/token |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		speed, per := "–", "–"
		if r.TTFTMs > 0 && base > 0 {
			speed = fmt.Sprintf("%.1f×", base/r.TTFTMs)
		}
		if r.StoredBytes > 0 && r.StoredTokens > 0 {
			per = fmt.Sprintf("%.0f", float64(r.StoredBytes)/float64(r.StoredTokens))
		}
		level := r.Level
		if level == "" {
			level = "–"
		}
		fmt.Fprintf(w, "| %s | %s | %.1f | %s | %d of %d | %d | %s |\n", r.Source, level, r.TTFTMs, speed, r.CachedTokens, r.PromptTokens, r.StoredBytes, per)
	}
}
