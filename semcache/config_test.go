package semcache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig("testdata/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.policy("code"); p.Threshold != 0.72 || p.Margin != 0.02 || time.Duration(p.TTL) != 24*time.Hour || p.MaxEntries != 50000 || p.MaxBytes != 64<<20 {
		t.Fatalf("code policy %+v", p)
	}
	if p := cfg.policy("unlisted"); p.Threshold != 1.01 {
		t.Fatalf("unlisted categories take the default: %+v", p)
	}
	if !cfg.Exact || !cfg.Surface || cfg.Embedder != "hash" {
		t.Fatalf("fields left out keep the defaults: %+v", cfg)
	}
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{`{"default": {"threshold": 1.5}}`, "default.threshold"},
		{`{"categories": {"code": {"threshold": 0}}}`, "categories.code.threshold"},
		{`{"categories": {"code": {"threshold": 0.9, "margin": -1}}}`, "margin"},
		{`{"categories": {"Code": {"threshold": 0.9}}}`, "lower case"},
		{`{"categories": {"code": {"threshold": 0.9, "ttl": "soon"}}}`, "duration"},
		{`{"categories": {"code": {"threshold": 0.9, "max_entries": -3}}}`, "max_entries"},
		{`{"thresold": 0.9}`, "unknown field"},
		{`{"load_adapt": 0.7}`, "load_adapt"},
		{`{"audit_rate": 1.5}`, "audit_rate"},
		{`{"audit_rate": -0.1}`, "audit_rate"},
		{`{"default": `, "unexpected EOF"},
	} {
		path := filepath.Join(dir, "c.json")
		os.WriteFile(path, []byte(tc.body), 0o644)
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.body, err, tc.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestThresholdRule(t *testing.T) {
	for _, tc := range []struct{ base, adapt, load, want float64 }{
		{0.8, 0.05, 0, 0.85}, {0.8, 0.05, 0.5, 0.8}, {0.8, 0.05, 1, 0.75}, {0.8, 0.05, 7, 0.75}, {0.8, 0.05, -1, 0.85}, {0.8, 0, 1, 0.8},
	} {
		if got := Threshold(tc.base, tc.adapt, tc.load); got < tc.want-1e-12 || got > tc.want+1e-12 {
			t.Errorf("Threshold(%v, %v, %v) = %v, want %v", tc.base, tc.adapt, tc.load, got, tc.want)
		}
	}
}
