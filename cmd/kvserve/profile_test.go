package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/press"
)

func TestProfileHeads(t *testing.T) {
	pool := compute.NewPool(0)
	b, err := engine.Open("", pool)
	if err != nil {
		pool.Close()
		t.Skipf("bundled model: %v", err)
	}
	c := b.Net.Config
	b.Close()
	pool.Close()

	path := filepath.Join(t.TempDir(), "heads.json")
	code, out, errOut := kvserve(t, "profile-heads", "--samples", "2", "--length", "300", "--out", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	h, err := press.ReadHeadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Layers != c.Layers || h.KVHeads != c.KVHeads || len(h.Retrieval) != c.Layers || len(h.Scores) != c.Layers {
		t.Fatalf("head file %d×%d, model %d×%d", h.Layers, h.KVHeads, c.Layers, c.KVHeads)
	}
	retrieval := 0
	for l := range h.Scores {
		for g, s := range h.Scores[l] {
			if s < 0 || s > 1.0001 {
				t.Errorf("layer %d head %d: needle share %v", l, g, s)
			}
			if h.Retrieval[l][g] {
				retrieval++
			}
		}
	}
	if n := c.Layers * c.KVHeads; retrieval == 0 || retrieval > n/2 {
		t.Errorf("%d of %d retrieval heads", retrieval, n)
	}
	if lines := strings.Count(out, "\n"); lines != c.Layers+2 || !strings.Contains(out, "head 0") {
		t.Errorf("table:\n%s", out)
	}
	// The head file drives duo_attention.
	if _, err := press.NewDuo(path, 0.5); err != nil {
		t.Error(err)
	}
	t.Logf("\n%s", out)
}

func TestProfileHeadsHelp(t *testing.T) {
	code, _, errOut := kvserve(t, "profile-heads", "--help")
	if code != 0 || !strings.Contains(errOut, "retrieval") || !strings.Contains(errOut, "--samples") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	if code, _, _ := kvserve(t, "profile-heads", "--samples", "0"); code != 2 {
		t.Errorf("--samples 0: exit %d", code)
	}
}
