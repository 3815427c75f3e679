package retrieve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/retrieve"
)

var (
	tinyOnce sync.Once
	tiny     *engine.Bundle
	tinyErr  error
)

// tinyPrompt returns the bundled tinychat and a prompt of 600 tokens: the first record of the bench's dev set, context and question
// in the chat template.
func tinyPrompt(t *testing.T) (*engine.Bundle, []int) {
	t.Helper()
	tinyOnce.Do(func() { tiny, tinyErr = engine.Open("", compute.NewPool(0)) })
	if tinyErr != nil {
		t.Skip("bundled model unavailable:", tinyErr)
	}
	f, err := os.Open("../bench/testdata/dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	sc.Scan()
	var rec struct {
		Context string `json:"context"`
		Turns   []struct {
			Question string `json:"question"`
		} `json:"turns"`
	}
	if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	ids := tiny.Tokenizer.Encode(rec.Context + "\n\n" + rec.Turns[0].Question)
	return tiny, ids[max(0, len(ids)-600):]
}

// generate decodes 12 tokens greedily after ids on a fork of base (which
// holds all of ids but the last), through r when set.
func generate(t *testing.T, b *engine.Bundle, base *kvcache.Seq, ids []int, r *retrieve.Retriever) ([]int, *kvcache.Seq) {
	t.Helper()
	cache, err := base.Fork(base.Next())
	if err != nil {
		t.Fatal(err)
	}
	req := engine.Request{Prompt: ids, MaxTokens: 12, IgnoreEOS: true}
	if r != nil {
		r.Tokens(ids)
		req.Retrieve = r
	}
	out, err := b.Generate(context.Background(), cache, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out.Output, cache
}

// TestSelectorsOnTheModel decodes with every selector on tinychat: each
// step reads no more than its budget, the oracle at a quarter of the
// tokens keeps the full cache's greedy answer, and with a cold tier a
// selector gives exactly the tokens it gives with the KV resident while
// far fewer bytes stay in the pool.
func TestSelectorsOnTheModel(t *testing.T) {
	b, ids := tinyPrompt(t)
	base := b.Net.NewPool(0, kvcache.BF16).NewSeq()
	defer base.Release()
	if _, err := b.Net.Forward(base, ids[:len(ids)-1], model.NoLogits); err != nil {
		t.Fatal(err)
	}
	full, fc := generate(t, b, base, ids, nil)
	fullBytes := fc.StoredBytes()
	fc.Release()
	ends := retrieve.SentenceEnds(func(id int) string { return b.Tokenizer.Decode([]int{id}) }, b.Net.Config.VocabSize)
	for _, name := range retrieve.Names() {
		t.Run(name, func(t *testing.T) {
			budget := retrieve.Budget{Fraction: 0.25}
			r, err := retrieve.New(name, b.Net.Config, retrieve.Options{Budget: budget, SentenceEnd: ends})
			if err != nil {
				t.Fatal(err)
			}
			out, c := generate(t, b, base, ids, r)
			c.Release()
			st := r.Stats()
			if st.Steps != int64(len(out)) { // the prompt's last token is a one-token pass too
				t.Errorf("%d one-token passes counted for %d tokens", st.Steps, len(out))
			}
			frac := st.TokensRead / st.TokensCached
			if name != "none" && (frac > 0.25+1e-3 || frac < 0.2) {
				t.Errorf("read %.3f of the tokens per step, budget 0.25", frac)
			}
			if (name == "none" || name == "oracle") && !slices.Equal(out, full) {
				t.Errorf("%s: %v, full cache %v", name, out, full)
			}
			if name == "none" {
				return
			}
			tier := kvcache.NewColdTier()
			defer tier.Close()
			rc, err := retrieve.New(name, b.Net.Config, retrieve.Options{Budget: budget, SentenceEnd: ends, Cold: tier})
			if err != nil {
				t.Fatal(err)
			}
			cold, c := generate(t, b, base, ids, rc)
			resident := c.StoredBytes()
			c.Release()
			if !slices.Equal(cold, out) {
				t.Errorf("with the KV in a cold tier: %v, resident %v", cold, out)
			}
			if resident > fullBytes/4 || tier.Bytes() == 0 || rc.Stats().ColdFetched == 0 {
				t.Errorf("cold tier: %d bytes left in the pool of %d, %d in the tier, %g fetched per step",
					resident, fullBytes, tier.Bytes(), rc.Stats().ColdFetched)
			}
		})
	}
}
