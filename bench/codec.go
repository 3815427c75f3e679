package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/codec"
	"github.com/kvserve/kvserve/model"
)

// CodecRow is one configuration of a codec accuracy run.
type CodecRow struct {
	// Level is a codec level, "none" for the cache as computed, or
	// "pool-int4" for kvserve's own 4-bit blocks (Seq.Quantize).
	Level string `json:"level"`
	// Bytes is the encoded size of the contexts, summed; BF16Bytes what
	// bf16 keys and values of the same tokens take.
	Bytes     int64   `json:"bytes"`
	BF16Bytes int64   `json:"bf16_bytes"`
	Correct   int     `json:"correct"`
	Total     int     `json:"total"`
	EncodeSec float64 `json:"encode_seconds"`
	DecodeSec float64 `json:"decode_seconds"`
}

// CodecAccuracy answers the first turn of every record once from the cache
// as computed and once per level after a round trip through the codec:
// the context (up to the first question, as the query-agnostic harness
// splits it) is prefilled, encoded in chunks of chunkTokens, decoded into
// a fresh cache, and the question is computed on top. It returns one row
// per level, "none" first and "pool-int4" last.
func CodecAccuracy(ctx context.Context, b *engine.Bundle, recs []Record, levels []codec.Level, chunkTokens int, progress io.Writer) ([]*CodecRow, error) {
	cfg := b.Net.Config
	bf16PerToken := int64(2 * cfg.Layers * cfg.KVHeads * cfg.HeadDim * 2)
	rows := []*CodecRow{{Level: "none"}}
	for _, l := range levels {
		rows = append(rows, &CodecRow{Level: l.String()})
	}
	rows = append(rows, &CodecRow{Level: "pool-int4"})
	pool := b.Net.NewPool(0, kvcache.F32)
	bar := newProgress(progress, len(recs)*len(rows))
	correct := 0
	for ri := range recs {
		r := &recs[ri]
		text, err := b.ChatPrompt(TurnMessages(r, 1))
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", r.ID, err)
		}
		ids := b.Tokenizer.Encode(text)
		if len(ids) >= b.ContextLength() {
			for range rows {
				bar.step(correct)
			}
			continue // too long for the model: skipped, as the harness does
		}
		end := strings.Index(text, r.Context)
		if end < 0 {
			return nil, fmt.Errorf("record %s: context not found in the rendered prompt", r.ID)
		}
		split := commonPrefix(b.Tokenizer.Encode(text[:end+len(r.Context)]), ids)
		base := pool.NewSeq()
		if _, err := b.Net.Forward(base, ids[:split], model.NoLogits); err != nil {
			base.Release()
			return nil, err
		}
		expected := strings.TrimSpace(r.Turns[0].Answer)
		for i, row := range rows {
			var cache *kvcache.Seq
			switch {
			case i == 0:
				cache, err = base.Fork(split)
				row.Bytes += int64(split) * bf16PerToken
			case i == len(rows)-1:
				if cache, err = base.Fork(split); err == nil {
					err = cache.Quantize(kvcache.Int4, 0)
					row.Bytes += cache.StoredBytes()
				}
			default:
				cache = pool.NewSeq()
				for start := 0; start < split && err == nil; start += chunkTokens {
					var c *codec.Chunk
					if c, err = codec.FromSeq(base, start, min(chunkTokens, split-start)); err != nil {
						break
					}
					t0 := time.Now()
					enc := codec.Encode(c, levels[i-1])
					t1 := time.Now()
					if c, _, err = codec.Decode(enc); err != nil {
						break
					}
					row.EncodeSec += t1.Sub(t0).Seconds()
					row.DecodeSec += time.Since(t1).Seconds()
					row.Bytes += int64(len(enc))
					err = c.AppendTo(cache)
				}
			}
			if err != nil {
				base.Release()
				return nil, fmt.Errorf("record %s, %s: %w", r.ID, row.Level, err)
			}
			row.BF16Bytes += int64(split) * bf16PerToken
			out, err := b.Generate(ctx, cache, engine.Request{Prompt: ids, MaxTokens: 40}, nil)
			cache.Release()
			if err != nil {
				base.Release()
				return nil, fmt.Errorf("record %s, %s: %w", r.ID, row.Level, err)
			}
			row.Total++
			if strings.TrimSpace(b.Tokenizer.Decode(out.Output)) == expected {
				row.Correct++
				correct++
			}
			bar.step(correct)
		}
		base.Release()
	}
	bar.done()
	return rows, nil
}

// CodecTable prints the rows: bytes against bf16, accuracy against the
// cache as computed, and coding speed.
func CodecTable(w io.Writer, rows []*CodecRow) {
	full := 0
	if len(rows) > 0 {
		full = rows[0].Correct
	}
	fmt.Fprintf(w, "| level | bytes | × smaller than bf16 | correct | of full cache | encode MB/s | decode MB/s |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ratio, rel := 0.0, 0.0
		if r.Bytes > 0 {
			ratio = float64(r.BF16Bytes) / float64(r.Bytes)
		}
		if full > 0 {
			rel = 100 * float64(r.Correct) / float64(full)
		}
		speed := func(sec float64) string {
			if sec == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f", float64(r.BF16Bytes)/sec/1e6)
		}
		fmt.Fprintf(w, "| %s | %d | %.2f× | %d/%d | %.0f %% | %s | %s |\n", r.Level, r.Bytes, ratio, r.Correct, r.Total, rel, speed(r.EncodeSec), speed(r.DecodeSec))
	}
}
