package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// This file is a load generator for any OpenAI-compatible server (this
// one, llama-server, vLLM): clients replay multi-turn conversations over a
// shared context, streamed, some cancelled mid-answer, and the run reports
// TTFT, inter-token latency, throughput and prefix hit rate.

// Message is one chat turn sent by the load generator.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Conversation is a multi-turn session: Turns[k] is the whole message list
// of turn k+1, which repeats the earlier turns, so a server that keeps the
// conversation's cache computes only what a turn adds.
type Conversation struct {
	ID    string
	Turns [][]Message
}

// LoadOptions configures a load run.
type LoadOptions struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8000.
	URL string
	// Model is sent as the request's model; "" sends none.
	Model string
	// Conversations are replayed, each by one client, in order.
	Conversations []Conversation
	// Concurrency is the number of clients at once; 1 if 0.
	Concurrency int
	// MaxTokens is each answer's max_tokens; 64 if 0.
	MaxTokens int
	// IgnoreEOS asks for exactly MaxTokens tokens (a vLLM and llama.cpp
	// extension).
	IgnoreEOS bool
	// CancelRate is the probability that a client abandons an answer
	// midway; the conversation then ends.
	CancelRate float64
	// Seed makes the cancellations repeatable.
	Seed uint64
	// APIKey, if set, is sent as "Authorization: Bearer APIKey".
	APIKey string
	// Timeout bounds each request; 10 minutes if 0.
	Timeout time.Duration
	// Client sends the requests; http.DefaultClient if nil.
	Client *http.Client
}

// LoadReport is the outcome of a load run.
type LoadReport struct {
	Wall   time.Duration
	Turns  []TurnStats // by turn index
	Total  TurnStats
	Errors []string // the first few failures
}

// TurnStats aggregates the requests of one turn index (or all of them).
type TurnStats struct {
	Turn                                 int // 1-based; 0 for the total
	Requests, Completed, Cancelled, Fail int
	PromptTokens, CachedTokens           int
	CompletionTokens                     int
	TTFT, ITL                            []time.Duration
}

// HitRate returns the share of prompt tokens the server reported cached.
func (t *TurnStats) HitRate() float64 {
	if t.PromptTokens == 0 {
		return 0
	}
	return float64(t.CachedTokens) / float64(t.PromptTokens)
}

// Throughput returns completion tokens per second over wall.
func (r *LoadReport) Throughput() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Total.CompletionTokens) / r.Wall.Seconds()
}

// outcome is one request's result.
type outcome struct {
	turn                int
	status              string // "ok", "cancelled", "failed"
	err                 string
	ttft                time.Duration
	itl                 []time.Duration
	prompt, cached, gen int
}

// RunLoad replays the conversations against a server and measures it. It
// stops early when ctx ends.
func RunLoad(ctx context.Context, o LoadOptions) (*LoadReport, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("load: no server URL")
	}
	if len(o.Conversations) == 0 {
		return nil, fmt.Errorf("load: no conversations")
	}
	o.URL = strings.TrimRight(o.URL, "/")
	o.Concurrency = max(o.Concurrency, 1)
	if o.MaxTokens <= 0 {
		o.MaxTokens = 64
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	var (
		next int64 = -1
		mu   sync.Mutex
		outs []outcome
		wg   sync.WaitGroup
	)
	start := time.Now()
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(w)))
			for ctx.Err() == nil {
				i := atomic.AddInt64(&next, 1)
				if int(i) >= len(o.Conversations) {
					return
				}
				for k, msgs := range o.Conversations[i].Turns {
					cancelAfter := 0
					if rng.Float64() < o.CancelRate {
						cancelAfter = 1 + rng.IntN(max(1, o.MaxTokens/2))
					}
					out := o.request(ctx, msgs, cancelAfter)
					out.turn = k + 1
					mu.Lock()
					outs = append(outs, out)
					mu.Unlock()
					if out.status != "ok" || ctx.Err() != nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	rep := &LoadReport{Wall: time.Since(start)}
	for _, out := range outs {
		for len(rep.Turns) < out.turn {
			rep.Turns = append(rep.Turns, TurnStats{Turn: len(rep.Turns) + 1})
		}
		for _, t := range []*TurnStats{&rep.Turns[out.turn-1], &rep.Total} {
			t.Requests++
			switch out.status {
			case "ok":
				t.Completed++
				t.PromptTokens += out.prompt
				t.CachedTokens += out.cached
				t.CompletionTokens += out.gen
				if out.ttft > 0 {
					t.TTFT = append(t.TTFT, out.ttft)
				}
				t.ITL = append(t.ITL, out.itl...)
			case "cancelled":
				t.Cancelled++
			default:
				t.Fail++
			}
		}
		if out.status == "failed" && len(rep.Errors) < 5 {
			rep.Errors = append(rep.Errors, out.err)
		}
	}
	return rep, ctx.Err()
}

// request sends one streamed chat request; with cancelAfter > 0 it
// abandons the answer after that many content chunks.
func (o *LoadOptions) request(ctx context.Context, msgs []Message, cancelAfter int) outcome {
	body := map[string]any{
		"messages": msgs, "max_tokens": o.MaxTokens, "temperature": 0, "stream": true,
		"stream_options": map[string]bool{"include_usage": true},
	}
	if o.Model != "" {
		body["model"] = o.Model
	}
	if o.IgnoreEOS {
		body["ignore_eos"] = true
	}
	data, _ := json.Marshal(body)
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, o.URL+"/v1/chat/completions", bytes.NewReader(data))
	if err != nil {
		return outcome{status: "failed", err: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	t0 := time.Now()
	resp, err := o.Client.Do(req)
	if err != nil {
		return outcome{status: "failed", err: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return outcome{status: "failed", err: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))}
	}
	out := outcome{status: "failed", err: "stream ended without [DONE]"}
	last := time.Time{}
	chunks := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		line = strings.TrimSpace(line)
		if line == "[DONE]" {
			out.status, out.err = "ok", ""
			break
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *wireUsage `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			out.err = "bad chunk: " + err.Error()
			return out
		}
		if c.Error != nil {
			out.err = c.Error.Message
			return out
		}
		if c.Usage != nil {
			out.prompt, out.gen = c.Usage.PromptTokens, c.Usage.CompletionTokens
			if d := c.Usage.PromptTokensDetails; d != nil {
				out.cached = d.CachedTokens
			}
		}
		if len(c.Choices) == 0 || c.Choices[0].Delta.Content == "" {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			out.ttft = now.Sub(t0)
		} else {
			out.itl = append(out.itl, now.Sub(last))
		}
		last = now
		chunks++
		if cancelAfter > 0 && chunks >= cancelAfter {
			cancel()
			return outcome{status: "cancelled"}
		}
	}
	if err := sc.Err(); err != nil && out.status != "ok" {
		out.err = err.Error()
	}
	return out
}

// percentile returns the p-quantile (0…1) of ds, 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// Table writes the report as a table: one row per turn and a total.
func (r *LoadReport) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "turn\treqs\tdone\tcancel\tfail\tprompt tok\thit %\tTTFT p50 ms\tTTFT p90 ms\tITL p50 ms\tITL p90 ms\tgen tok\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	row := func(name string, t *TurnStats) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%d\t\n", name, t.Requests, t.Completed, t.Cancelled, t.Fail,
			t.PromptTokens, 100*t.HitRate(), ms(percentile(t.TTFT, 0.5)), ms(percentile(t.TTFT, 0.9)),
			ms(percentile(t.ITL, 0.5)), ms(percentile(t.ITL, 0.9)), t.CompletionTokens)
	}
	for i := range r.Turns {
		row(fmt.Sprint(r.Turns[i].Turn), &r.Turns[i])
	}
	row("all", &r.Total)
	tw.Flush()
	fmt.Fprintf(w, "wall %.2f s, %.1f generated tok/s, %.2f requests/s\n", r.Wall.Seconds(), r.Throughput(), float64(r.Total.Requests)/max(r.Wall.Seconds(), 1e-9))
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

// wireUsage is the usage object of an OpenAI response, as a client reads
// it (cached_tokens may be absent: llama-server sends none).
type wireUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}
