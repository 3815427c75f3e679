package semcache_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/semcache/embed"
)

func TestProcrustesRecoversARotation(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const d = 8
	// A rotation: Gram-Schmidt on random rows.
	rot := make([][]float64, d)
	for i := range rot {
		v := make([]float64, d)
		for j := range v {
			v[j] = rng.NormFloat64()
		}
		for _, u := range rot[:i] {
			var p float64
			for j := range v {
				p += v[j] * u[j]
			}
			for j := range v {
				v[j] -= p * u[j]
			}
		}
		var n float64
		for _, x := range v {
			n += x * x
		}
		for j := range v {
			v[j] /= math.Sqrt(n)
		}
		rot[i] = v
	}
	var old, new [][]float32
	for range 40 {
		x := make([]float32, d)
		for j := range x {
			x[j] = float32(rng.NormFloat64())
		}
		semcache.Normalize(x)
		y := make([]float32, d)
		for j := range y {
			for i := range x {
				y[j] += x[i] * float32(rot[i][j])
			}
		}
		old, new = append(old, x), append(new, y)
	}
	p, err := semcache.FitProcrustes(old[:20], new[:20])
	if err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 40; i++ { // held-out pairs
		got := p.Apply(old[i])
		for j := range got {
			if math.Abs(float64(got[j]-new[i][j])) > 1e-4 {
				t.Fatalf("pair %d: mapped %v, want %v", i, got, new[i])
			}
		}
	}
	if _, err := semcache.FitProcrustes(old[:3], new[:2]); err == nil {
		t.Fatal("unpaired vectors fitted")
	}
}

func TestUpgradeKeepsEntriesAnswerable(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.CalibratedFor = ""
	c, err := semcache.New(ctx, cfg, embed.NewHash(256))
	if err != nil {
		t.Fatal(err)
	}
	c.Store(ctx, query(t, "", "What does errors.As do in Go?", ""), nil, answer("A", "stop"))
	c.Store(ctx, query(t, "", "How can I sleep better?", ""), nil, answer("B", "stop"))
	n, err := c.Upgrade(ctx, embed.NewHash(512), "hash512", 10)
	if err != nil || n != 2 {
		t.Fatalf("Upgrade = %d, %v", n, err)
	}
	res := c.Lookup(ctx, query(t, "", "In Go, what does errors.As do?", ""))
	if !res.Hit || res.Tier != "semantic" || res.Answer.Choices[0].Text != "A" {
		t.Fatalf("paraphrase after the upgrade: %+v", res)
	}
	if res := c.Lookup(ctx, query(t, "", "how can i sleep better", "")); !res.Hit || res.Tier != "surface" {
		t.Fatalf("surface after the upgrade: %+v", res)
	}
	if _, err := c.Upgrade(ctx, failing{}, "failing", 1); err == nil {
		t.Fatal("an upgrade to a failing embedder succeeded")
	}
}
