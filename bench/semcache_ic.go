package bench

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

// ICResult measures IC-Cache mode on one kind of row: of the rows that
// missed with at least one example, how many answers equal the nearest
// example's answer, asked plainly and with the examples in the prompt.
type ICResult struct {
	Kind       string `json:"kind"`
	Rows       int    `json:"rows"`
	PlainMatch int    `json:"plain_matches_neighbour"`
	ICMatch    int    `json:"ic_matches_neighbour"`
}

// ICCache stores every seed with the model's own answer (chat template,
// greedy, at most maxTokens), then for every other row that misses the
// cache but has examples (Result.Examples(k, minSim)) generates its answer
// plainly and with the examples as earlier turns, and counts how often
// each equals the nearest example's answer. On paraphrase rows a match is
// the neighbour's answer carried over; on negative rows it is a wrong
// answer copied.
func ICCache(ctx context.Context, b *engine.Bundle, rows []SemRow, cfg semcache.Config, emb semcache.Embedder, k int, minSim float64, maxTokens int, progress io.Writer) ([]ICResult, error) {
	c, err := semcache.New(ctx, cfg, emb)
	if err != nil {
		return nil, err
	}
	gen := func(msgs []chat.Message) (string, error) {
		text, err := b.ChatPrompt(msgs)
		if err != nil {
			return "", err
		}
		var out []int
		_, err = b.Generate(ctx, b.Net.NewCache(), engine.Request{Prompt: b.Tokenizer.Encode(text), MaxTokens: maxTokens}, func(id int) error {
			out = append(out, id)
			return nil
		})
		return strings.TrimSpace(b.Tokenizer.Decode(out)), err
	}
	if progress != nil {
		fmt.Fprintf(progress, "IC-Cache (%s, k %d, min similarity %.2f):\n", emb.Name(), k, minSim)
	}
	bar := newProgress(progress, len(rows))
	for i := range rows {
		r := &rows[i]
		if r.Kind != "seed" {
			continue
		}
		ans, err := gen([]chat.Message{{Role: "user", Content: r.Prompt}})
		if err != nil {
			return nil, err
		}
		// Seed answers are cut at maxTokens; they are labelled data here.
		c.Store(ctx, &semcache.Query{Request: semRequest(r, true)}, nil, &semcache.Answer{Choices: []semcache.Choice{{Text: ans, Finish: "stop"}}})
		bar.step(0)
	}
	by := map[string]*ICResult{}
	for i := range rows {
		r := &rows[i]
		if r.Kind == "seed" {
			continue
		}
		bar.step(0)
		res := c.Lookup(ctx, &semcache.Query{Request: semRequest(r, true)})
		if res.Hit {
			continue
		}
		ex := res.Examples(k, minSim)
		if len(ex) == 0 {
			continue
		}
		want := ex[len(ex)-1].Answer.Choices[0].Text
		plain, err := gen([]chat.Message{{Role: "user", Content: r.Prompt}})
		if err != nil {
			return nil, err
		}
		var msgs []chat.Message
		for _, e := range ex {
			msgs = append(msgs, chat.Message{Role: "user", Content: e.Question}, chat.Message{Role: "assistant", Content: e.Answer.Choices[0].Text})
		}
		ic, err := gen(append(msgs, chat.Message{Role: "user", Content: r.Prompt}))
		if err != nil {
			return nil, err
		}
		res2 := by[r.Kind]
		if res2 == nil {
			res2 = &ICResult{Kind: r.Kind}
			by[r.Kind] = res2
		}
		res2.Rows++
		if plain == want {
			res2.PlainMatch++
		}
		if ic == want {
			res2.ICMatch++
		}
	}
	bar.done()
	var out []ICResult
	for _, kind := range sortedKeys(by) {
		out = append(out, *by[kind])
	}
	return out, nil
}

// UpgradePoint is the cache's quality after an embedder upgrade in which
// Sample of the stored entries were re-embedded and the rest mapped.
type UpgradePoint struct {
	From, To string
	Sample   int `json:"sample"`
	Entries  int `json:"entries"`
	SemPoint
}

// SemUpgrade stores every seed with the old embedder, upgrades the cache
// to the new one re-embedding n of the entries for each n of samples (the
// rest are mapped by Procrustes; n = all seeds re-embeds everything), and
// runs the other rows with cfg's thresholds (calibrated for the new
// embedder). n = 0 is the cache before the upgrade: the old embedder, whose
// semantic tier stays off when cfg is calibrated for another.
func SemUpgrade(ctx context.Context, rows []SemRow, cfg semcache.Config, old semcache.Embedder, oldSpec string, new semcache.Embedder, newSpec string, samples []int) ([]UpgradePoint, error) {
	var out []UpgradePoint
	for _, n := range samples {
		c0 := cfg
		c0.Embedder = oldSpec
		if n > 0 {
			c0.CalibratedFor = "" // keep the old vectors to upgrade
		}
		c, err := semcache.New(ctx, c0, old)
		if err != nil {
			return nil, err
		}
		seeds := 0
		for i := range rows {
			if rows[i].Kind == "seed" {
				c.Store(ctx, &semcache.Query{Request: semRequest(&rows[i], true)}, nil, &semcache.Answer{Choices: []semcache.Choice{{Text: rows[i].Cluster, Finish: "stop"}}})
				seeds++
			}
		}
		if n > 0 {
			if _, err := c.Upgrade(ctx, new, newSpec, n); err != nil {
				return nil, err
			}
		}
		var res []SemRowResult
		for i := range rows {
			r := &rows[i]
			if r.Kind == "seed" {
				continue
			}
			lr := c.Lookup(ctx, &semcache.Query{Request: semRequest(r, true)})
			res = append(res, SemRowResult{ID: r.ID, Kind: r.Kind, Category: r.Category, Hit: lr.Hit, Right: lr.Hit && r.Cluster != "" && lr.Answer.Choices[0].Text == r.Cluster})
		}
		out = append(out, UpgradePoint{From: old.Name(), To: new.Name(), Sample: n, Entries: seeds, SemPoint: point(fmt.Sprintf("sample %d", n), res)})
	}
	return out, nil
}
