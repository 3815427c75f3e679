package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/kvserve/kvserve/internal/metric"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/codec"
	"github.com/kvserve/kvserve/kvcache/store"
	"github.com/kvserve/kvserve/server"
)

// tierOptions are serve's flags for the KV tiers below memory.
type tierOptions struct {
	disk         string
	diskSize     int64
	redis        string
	redisTTL     time.Duration
	redisSize    int64
	redisTimeout time.Duration
	hostMemory   int64
	level        codec.Level
	chunk        int

	diskSizeFlag, redisSizeFlag, hostMemoryFlag, levelFlag *string
}

// addTierFlags declares the tier flags on fs.
func addTierFlags(fs *flag.FlagSet, o *tierOptions) {
	fs.StringVar(&o.disk, "kv-disk", "", "directory for a disk tier of KV chunks: a restarted server loads prompts from it instead of computing them")
	o.diskSizeFlag = fs.String("kv-disk-size", "10GiB", "size cap of the disk tier; least recently used chunks go first")
	fs.StringVar(&o.redis, "kv-redis", "", "Redis URL for a shared tier of KV chunks, e.g. redis://localhost:6379/0: servers on one Redis load each other's prompts (and, with --semcache, each other's cached answers)")
	fs.DurationVar(&o.redisTTL, "kv-redis-ttl", 24*time.Hour, "how long a chunk lives in Redis (0: no expiry)")
	o.redisSizeFlag = fs.String("kv-redis-size", "0", "size cap of the chunks kept in Redis, over every server sharing it (0: none; leave it to maxmemory)")
	fs.DurationVar(&o.redisTimeout, "kv-redis-timeout", 250*time.Millisecond, "network timeout of Redis operations; a slow or dead Redis costs at most this, then the prompt is computed")
	o.hostMemoryFlag = fs.String("kv-host-memory", "0", "bytes of a host-memory tier of encoded chunks above disk and Redis (0: none)")
	o.levelFlag = fs.String("kv-codec", "cg1", "how chunks are encoded for the tiers: cg1 … cg4 (CacheGen, finest to coarsest), int8, int4 or bf16")
	fs.IntVar(&o.chunk, "kv-chunk", 256, "tokens per stored chunk: smaller ones leave fewer tokens of a prompt to compute, larger ones cost fewer bytes per token")
}

// parse reads the flags that need parsing.
func (o *tierOptions) parse() error {
	var err error
	if o.diskSize, err = parseBytes(*o.diskSizeFlag); err != nil {
		return usageError{"--kv-disk-size: " + err.Error()}
	}
	if o.redisSize, err = parseBytes(*o.redisSizeFlag); err != nil {
		return usageError{"--kv-redis-size: " + err.Error()}
	}
	if o.hostMemory, err = parseBytes(*o.hostMemoryFlag); err != nil {
		return usageError{"--kv-host-memory: " + err.Error()}
	}
	if o.level, err = codec.ParseLevel(*o.levelFlag); err != nil {
		return usageError{"--kv-codec: " + err.Error()}
	}
	if o.chunk < kvcache.DefaultBlockTokens {
		return usageError{fmt.Sprintf("--kv-chunk must be ≥ %d", kvcache.DefaultBlockTokens)}
	}
	return nil
}

// any reports whether a tier is asked for.
func (o *tierOptions) any() bool { return o.disk != "" || o.redis != "" || o.hostMemory > 0 }

// openTiers stacks the asked-for tiers under pc and returns the tiered
// cache; closing its store (after the scheduler) writes what is queued.
func openTiers(o *tierOptions, b *engine.Bundle, pc *engine.PrefixCache, format kvcache.Format, metrics *server.Metrics, log *slog.Logger) (*engine.TieredCache, error) {
	var tiers []store.Tier
	if o.hostMemory > 0 {
		tiers = append(tiers, store.NewMemory(o.hostMemory))
	}
	if o.disk != "" {
		d, err := store.OpenDisk(o.disk, o.diskSize)
		if err != nil {
			return nil, err
		}
		tiers = append(tiers, d)
	}
	if o.redis != "" {
		r, err := store.OpenRedis(store.RedisOptions{URL: o.redis, TTL: o.redisTTL, Cap: o.redisSize, Timeout: o.redisTimeout, Logger: log})
		if err != nil {
			return nil, err
		}
		tiers = append(tiers, r)
	}
	names := make([]string, len(tiers))
	for i, t := range tiers {
		names[i] = t.Name()
	}
	st := store.New(store.Options{Tiers: tiers, Observer: metrics.TierObserver(names), Logger: log})
	tc := engine.NewTieredCache(pc, engine.TierConfig{Store: st, Level: o.level, ChunkTokens: o.chunk, Namespace: modelNamespace(b, format), Logger: log})
	loads := func(name, help string, f func(engine.TierLoads) int64) metric.Collector {
		return metric.NewCounterFunc(metric.CounterOpts{Namespace: "kvserve", Name: name, Help: help}, func() float64 { return float64(f(tc.Loads())) })
	}
	metrics.Registry().MustRegister(
		loads("kv_tier_loaded_tokens_total", "Prompt tokens loaded from the KV store instead of computed.", func(l engine.TierLoads) int64 { return l.Tokens }),
		loads("kv_tier_spilled_chunks_total", "KV chunks queued for writing to the store.", func(l engine.TierLoads) int64 { return l.Spilled }),
	)
	return tc, nil
}

// modelNamespace names the model and the pool's format in store keys: the
// model's name and a hash of its configuration, so that no other model
// (or another version of this one) reads the entries.
func modelNamespace(b *engine.Bundle, format kvcache.Format) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%+v", b.Net.Config))
	return fmt.Sprintf("%s-%s/%s", b.Name, hex.EncodeToString(h[:6]), format)
}
