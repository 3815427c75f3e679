package embed

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/server"
)

// TestHTTPMatchesModel embeds through a real kvserve /v1/embeddings and
// directly with the served model: the same vectors.
func TestHTTPMatchesModel(t *testing.T) {
	pool := compute.NewPool(1)
	defer pool.Close()
	b, err := engine.Open("", pool)
	if err != nil {
		t.Skipf("bundled model: %v", err)
	}
	defer b.Close()
	sched := engine.NewScheduler(b, engine.SchedulerConfig{})
	defer sched.Close()
	ts := httptest.NewServer(server.New(b, sched, server.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer ts.Close()
	ctx := context.Background()
	texts := []string{"what does errors.as do in go", "how can i sleep better"}
	remote, err := NewHTTP(ts.URL, "", "").Embed(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	local, err := NewModel(b).Embed(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range texts {
		for j := range local[i] {
			if math.Abs(float64(local[i][j]-remote[i][j])) > 1e-6 {
				t.Fatalf("%q: element %d: %g over HTTP, %g direct", texts[i], j, remote[i][j], local[i][j])
			}
		}
	}
	if _, err := NewHTTP(ts.URL+"/nowhere", "", "").Embed(ctx, texts); err == nil {
		t.Fatal("a 404 embedded")
	}
	ts.Close()
	if _, err := NewHTTP(ts.URL, "", "").Embed(ctx, texts); err == nil {
		t.Fatal("a closed server embedded")
	}
}
