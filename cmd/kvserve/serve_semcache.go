package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/semcache/embed"
	"github.com/kvserve/kvserve/semcache/semredis"
	"github.com/kvserve/kvserve/server"
)

// semcacheOptions are serve's response-cache flags.
type semcacheOptions struct {
	on       bool
	file     string
	embedder string
	cfg      semcache.Config
}

func addSemcacheFlags(fs *flag.FlagSet) *semcacheOptions {
	o := &semcacheOptions{}
	fs.BoolVar(&o.on, "semcache", false, "answer repeated and paraphrased completions from a response cache, in memory and, with --kv-redis, in Redis (shared by replicas, loaded on start; exact, surface and semantic tiers; per-category thresholds, TTLs and quotas; tenants apart; see docs/parts/issue-15.md)")
	fs.StringVar(&o.file, "semcache-config", "", "JSON file of the response cache's settings over the defaults (per-category threshold, margin, ttl, max_entries, max_bytes, match_numbers, examples; load_adapt, load_full, sliding_ttl, exact, surface, semantic, classify, embedder)")
	fs.StringVar(&o.embedder, "semcache-embedder", "", "the semantic tier's embedder, over the config's: hash, model (the served model's pooled states), bert:DIR, or an http(s):// /v1/embeddings URL")
	return o
}

// check reads and validates the configuration (before the model loads).
func (o *semcacheOptions) check() error {
	if !o.on {
		if o.file != "" || o.embedder != "" {
			return usageError{"--semcache-config and --semcache-embedder need --semcache"}
		}
		return nil
	}
	o.cfg = semcache.DefaultConfig()
	if o.file != "" {
		var err error
		if o.cfg, err = semcache.LoadConfig(o.file); err != nil {
			return usageError{"--semcache-config: " + err.Error()}
		}
	}
	if o.embedder != "" {
		o.cfg.Embedder = o.embedder
	}
	return nil
}

// open builds the cache; an embedder that cannot embed a probe text is an
// error at start.
// With redisURL (serve's --kv-redis) every entry is also written to Redis
// under the model's and embedder's prefix (package semcache/semredis), and
// the entries there are loaded now; a Redis that is down is a warning.
// shared, if set, is the embedder to use instead of opening the spec (the
// --embed-model encoder when the spec names the same folder).
func (o *semcacheOptions) open(ctx context.Context, b *engine.Bundle, shared semcache.Embedder, model, redisURL string, redisTimeout time.Duration, log *slog.Logger) (*semcache.Cache, func(), error) {
	if o == nil || !o.on {
		return nil, func() {}, nil
	}
	var emb semcache.Embedder
	if o.cfg.Semantic {
		emb = shared
		if emb == nil {
			var err error
			if emb, err = embed.Open(o.cfg.Embedder, b); err != nil {
				return nil, nil, fmt.Errorf("--semcache: %w", err)
			}
		}
		if _, err := emb.Embed(ctx, []string{"probe"}); err != nil {
			return nil, nil, fmt.Errorf("--semcache: the embedder %s fails: %w", emb.Name(), err)
		}
	}
	c, err := semcache.New(ctx, o.cfg, emb)
	if err != nil {
		return nil, nil, fmt.Errorf("--semcache: %w", err)
	}
	storage, closer := "memory", func() {}
	if redisURL != "" {
		st, err := semredis.Open(semredis.Options{URL: redisURL, Model: model, Embedder: o.cfg.Embedder, Timeout: redisTimeout, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("--semcache with --kv-redis: %w", err)
		}
		c.SetPersister(st)
		closer = func() { st.Close() }
		start := time.Now()
		n, skipped, err := c.Restore(ctx)
		if err != nil {
			log.Warn("response cache: cannot load the entries kept in Redis; starting with those read so far, writing on", "loaded", n, "err", err)
		} else {
			log.Info("response cache: entries loaded from Redis", "loaded", n, "skipped", skipped, "prefix", st.KeyPrefix(), "took", time.Since(start).Round(time.Millisecond))
		}
		storage = "memory+redis"
	}
	name := "none"
	if emb != nil {
		name = emb.Name()
	}
	if !c.Calibrated() {
		log.Warn("response cache: the thresholds were chosen for another embedder; the semantic tier is off (set calibrated_for and thresholds in --semcache-config; kvserve bench semcache prints tuned ones)",
			"embedder", o.cfg.Embedder, "calibrated_for", o.cfg.CalibratedFor)
	}
	log.Info("response cache on", "embedder", name, "categories", o.cfg.CategoryNames(), "semantic", c.Config().Semantic, "storage", storage)
	return c, closer, nil
}

// sharedEncoder returns enc when the cache's embedder is bert:DIR of the
// --embed-model folder dir (one copy of the weights for both), else nil.
func (o *semcacheOptions) sharedEncoder(enc *embed.BERT, dir string) semcache.Embedder {
	if o == nil || !o.on || !o.cfg.Semantic || enc == nil {
		return nil
	}
	spec, ok := strings.CutPrefix(o.cfg.Embedder, "bert:")
	if !ok || filepath.Clean(spec) != filepath.Clean(dir) {
		return nil
	}
	return enc
}

// encoderName is the model name a sentence encoder is served under: its
// folder's name.
func encoderName(dir string) string {
	if dir == "" {
		return ""
	}
	return filepath.Base(filepath.Clean(dir))
}

// encoder returns e as a server.Encoder, nil when there is none.
func encoder(e *embed.BERT) server.Encoder {
	if e == nil {
		return nil
	}
	return e
}
