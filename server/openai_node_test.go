package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvserve/kvserve/engine"
)

// TestOpenAINodeClient runs clients/openai-node/check.mjs, the official
// openai npm client doing logprobs, a json_schema answer and a required
// tool call with its result sent back, whole and streamed, against a real
// server on a free port. It skips only without node or without the
// client's node_modules (.ci/run installs them with npm ci).
func TestOpenAINodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir, _ := filepath.Abs(filepath.Join("..", "clients", "openai-node"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil {
		t.Skipf("no node_modules in %s: run npm ci there", dir)
	}
	ts := start(t, engine.SchedulerConfig{MaxBatch: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KVSERVE_URL="+ts.URL+"/v1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("node check.mjs: %v", err)
	}
}
