package press

import (
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/model"
)

// llamaFixture is the tiny random-weight llama the model-level press tests
// run on (2 layers, 2 KV heads).
const llamaFixture = "../model/testdata/archs/llama3-ropescaled"

// loadFixture loads the model folder dir on a one-thread pool, both
// closed when the test ends, and returns it with n reproducible prompt
// token ids.
func loadFixture(t *testing.T, dir string, n int) (*model.Model, []int) {
	t.Helper()
	pool := compute.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := model.Load(model.Source{Dir: dir}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tokens := make([]int, n)
	for i := range tokens {
		tokens[i] = 3 + (i*37)%(m.Config.VocabSize-3)
	}
	return m, tokens
}
