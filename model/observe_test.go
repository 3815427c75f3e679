package model

import (
	"math"
	"testing"
)

func TestObserver(t *testing.T) {
	m := loadDir(t, "testdata/archs/qwen3")
	var golden []archGolden
	readJSON(t, "testdata/archs/golden.json", &golden)
	ids := golden[0].InputIDs[:40]
	c := m.Config
	obs := &Observer{From: 30, PreRope: true, Hidden: true, Attention: true}
	cache := m.NewCache()
	// Two calls: observations accumulate over chunks.
	if _, err := m.ForwardObserved(cache, ids[:25], NoLogits, obs); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ForwardObserved(cache, ids[25:], LastLogits, obs); err != nil {
		t.Fatal(err)
	}
	group := c.Heads / c.KVHeads
	for l := range c.Layers {
		if got, want := len(obs.Queries[l]), 10*c.Heads*c.HeadDim; got != want {
			t.Fatalf("layer %d: %d query floats, want %d", l, got, want)
		}
		if len(obs.QueriesPre[l]) != len(obs.Queries[l]) || len(obs.HiddenStates[l]) != 10*c.HiddenSize {
			t.Fatalf("layer %d: pre-RoPE %d, hidden %d floats", l, len(obs.QueriesPre[l]), len(obs.HiddenStates[l]))
		}
		for g := range c.KVHeads {
			sum := obs.AttnSum[l][g]
			if len(sum) != 40 {
				t.Fatalf("attention sums over %d keys", len(sum))
			}
			var total float64
			for _, v := range sum {
				total += float64(v)
			}
			// Each of the 40 queries gives mass 1 per query head of the group.
			if math.Abs(total-float64(40*group)) > 1e-3 {
				t.Errorf("layer %d head %d: attention mass %g, want %d", l, g, total, 40*group)
			}
			// The last key is seen only by the last query.
			if sum[39] > float32(group) {
				t.Errorf("last key got %g", sum[39])
			}
		}
	}
	// Observed and plain passes give the same logits.
	plain, _ := m.Forward(m.NewCache(), ids, LastLogits)
	plain = append([]float32(nil), plain...) // the next pass reuses the buffer
	again, _ := m.ForwardObserved(m.NewCache(), ids, LastLogits, &Observer{Attention: true})
	if d := maxAbsDiff(plain, again); d != 0 {
		t.Errorf("observing changed logits by %g", d)
	}
}
