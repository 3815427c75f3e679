package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/semcache/embed"
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
	fs.BoolVar(&o.on, "semcache", false, "answer repeated and paraphrased completions from an in-memory response cache (exact, surface and semantic tiers; per-category thresholds, TTLs and quotas; tenants apart; see docs/parts/issue-15.md)")
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
func (o *semcacheOptions) open(ctx context.Context, b *engine.Bundle, log *slog.Logger) (*semcache.Cache, error) {
	if o == nil || !o.on {
		return nil, nil
	}
	var emb semcache.Embedder
	if o.cfg.Semantic {
		var err error
		if emb, err = embed.Open(o.cfg.Embedder, b); err != nil {
			return nil, fmt.Errorf("--semcache: %w", err)
		}
		if _, err := emb.Embed(ctx, []string{"probe"}); err != nil {
			return nil, fmt.Errorf("--semcache: the embedder %s fails: %w", emb.Name(), err)
		}
	}
	c, err := semcache.New(ctx, o.cfg, emb)
	if err != nil {
		return nil, fmt.Errorf("--semcache: %w", err)
	}
	name := "none"
	if emb != nil {
		name = emb.Name()
	}
	if !c.Calibrated() {
		log.Warn("response cache: the thresholds were chosen for another embedder; the semantic tier is off (set calibrated_for and thresholds in --semcache-config; kvserve bench semcache prints tuned ones)",
			"embedder", o.cfg.Embedder, "calibrated_for", o.cfg.CalibratedFor)
	}
	log.Info("response cache on", "embedder", name, "categories", o.cfg.CategoryNames(), "semantic", c.Config().Semantic, "storage", "memory")
	return c, nil
}
