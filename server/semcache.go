package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/kvserve/kvserve/internal/metric"
	"github.com/kvserve/kvserve/semcache"
)

// This file puts the response cache (package semcache, Config.SemCache) in
// front of chat and text completions. A hit is answered without the
// engine, whole or streamed like a fresh answer; a miss runs as usual and
// its answer is offered to the cache once written. The X-Semcache response
// header says "hit" (with tier, similarity and category), "miss" (with the
// reason) or "bypass", and a whole response's usage carries the same as
// usage.semcache. A request with Cache-Control: no-cache is answered fresh
// (and its answer stored); no-store neither reads nor writes the cache. The
// X-Semcache-Category request header names the category when the body's
// semcache_category does not.

// semcacheHook returns a wrapper that puts the cache in front of a
// completion handler (the handler itself without a cache), and registers
// the cache's metrics and load signal.
func (s *Server) semcacheHook() func(http.HandlerFunc) http.HandlerFunc {
	c := s.cfg.SemCache
	if c == nil {
		return func(h http.HandlerFunc) http.HandlerFunc { return h }
	}
	full := float64(max(1, c.Config().LoadFull))
	c.SetLoad(func() float64 {
		st := s.sched.Stats()
		return min(1, float64(st.Queued+st.Running)/full)
	})
	s.metrics.reg.MustRegister(semcacheCollector(c))
	audits := make(chan struct{}, maxAudits)
	return func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { s.semcached(w, r, next, audits) }
	}
}

// semcacheFields are the request fields the hook reads besides the key.
type semcacheFields struct {
	Model         string         `json:"model"`
	CacheSalt     *string        `json:"cache_salt"`
	StreamOptions *streamOptions `json:"stream_options"`
}

func (s *Server) semcached(w http.ResponseWriter, r *http.Request, next http.HandlerFunc, audits chan struct{}) {
	cc := strings.ToLower(r.Header.Get("Cache-Control"))
	if strings.Contains(cc, "no-store") {
		w.Header().Set("X-Semcache", "bypass")
		next(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		next(w, r) // the handler reports the body's error
		return
	}
	req, perr := semcache.ParseRequest(body)
	var f semcacheFields
	if perr != nil || json.Unmarshal(body, &f) != nil || s.checkModel(f.Model) != nil {
		w.Header().Set("X-Semcache", "bypass")
		next(w, r) // not cacheable, or wrong: the handler answers
		return
	}
	q := &semcache.Query{Tenant: tenantSalt(r, f.CacheSalt), Request: req, Category: r.Header.Get("X-Semcache-Category")}
	var res *semcache.Result
	if strings.Contains(cc, "no-cache") {
		w.Header().Set("X-Semcache", "bypass")
	} else {
		start := time.Now()
		res = s.cfg.SemCache.Lookup(r.Context(), q)
		if res.Err != nil {
			s.log.Warn("semcache lookup missed on an error", "err", res.Err)
		}
		if res.Hit {
			s.replay(w, req, f, res, time.Since(start))
			if rate := s.cfg.SemCache.Config().AuditRate; res.Tier == "semantic" && !req.Sampled && rate > 0 && rand.Float64() < rate {
				select {
				case audits <- struct{}{}:
					go func() {
						defer func() { <-audits }()
						s.audit(r, body, req, res, next)
					}()
				default: // as many audits run as may: skip this one
				}
			}
			return
		}
		w.Header().Set("X-Semcache", fmt.Sprintf("miss; reason=%s; similarity=%.4f; category=%s", res.Reason, res.Similarity, res.Category))
		if ic := s.cfg.SemCache.Config().IC; ic.K > 0 && req.Chat {
			if ex := res.Examples(ic.K, ic.MinSimilarity); len(ex) > 0 {
				if nb, ok := withExamples(body, ex); ok {
					r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(nb)), int64(len(nb))
					w.Header().Set("X-Semcache", w.Header().Get("X-Semcache")+fmt.Sprintf("; ic=%d", len(ex)))
					res = nil // an answer made with examples is not stored
				}
			}
		}
	}
	rec := &answerRecorder{ResponseWriter: w, stream: req.Stream, chat: req.Chat}
	next(rec, r)
	rec.finish()
	if rec.code != http.StatusOK || rec.failed || r.Context().Err() != nil || strings.Contains(w.Header().Get("X-Semcache"), "; ic=") {
		return
	}
	if why := s.cfg.SemCache.Store(r.Context(), q, res, rec.answer()); why != "" {
		s.log.Debug("semcache: answer not stored", "reason", why)
	}
}

// maxAudits bounds the false-hit audits that run at once.
const maxAudits = 4

// audit runs a request that a semantic hit answered through the model
// (next, the handler without the cache) after the fact, and counts whether
// the fresh answer's texts equal the cached ones. The fresh answer goes
// nowhere and is not stored.
func (s *Server) audit(r *http.Request, body []byte, req *semcache.Request, res *semcache.Result, next http.HandlerFunc) {
	ar := r.Clone(context.WithoutCancel(r.Context()))
	ar.Body, ar.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	rec := &answerRecorder{ResponseWriter: &discardWriter{h: http.Header{}}, stream: req.Stream, chat: req.Chat}
	next(rec, ar)
	rec.finish()
	result := "error"
	if fresh := rec.answer(); rec.code == http.StatusOK && !rec.failed && fresh != nil {
		result = "match"
		if len(fresh.Choices) != len(res.Answer.Choices) {
			result = "mismatch"
		}
		for i := range min(len(fresh.Choices), len(res.Answer.Choices)) {
			if fresh.Choices[i].Text != res.Answer.Choices[i].Text {
				result = "mismatch"
			}
		}
	}
	s.cfg.SemCache.RecordAudit(res.Category, result)
	if result != "match" {
		s.log.Debug("semcache audit", "category", res.Category, "result", result, "similarity", res.Similarity)
	}
}

// discardWriter is a response writer that keeps nothing (an audit's).
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

// withExamples inserts cached question/answer pairs as user/assistant
// turns before the last user message of a chat body (IC-Cache mode).
func withExamples(body []byte, ex []semcache.Neighbor) ([]byte, bool) {
	var m map[string]json.RawMessage
	var msgs []json.RawMessage
	if json.Unmarshal(body, &m) != nil || json.Unmarshal(m["messages"], &msgs) != nil {
		return nil, false
	}
	last := -1
	for i, raw := range msgs {
		var msg struct {
			Role string `json:"role"`
		}
		if json.Unmarshal(raw, &msg) == nil && strings.EqualFold(strings.TrimSpace(msg.Role), "user") {
			last = i
		}
	}
	if last < 0 {
		return nil, false
	}
	var turns []json.RawMessage
	for _, e := range ex {
		if len(e.Answer.Choices) == 0 {
			continue
		}
		q, _ := json.Marshal(map[string]string{"role": "user", "content": e.Question})
		a, _ := json.Marshal(map[string]string{"role": "assistant", "content": e.Answer.Choices[0].Text})
		turns = append(turns, q, a)
	}
	out := append(append(append([]json.RawMessage{}, msgs[:last]...), turns...), msgs[last:]...)
	var err error
	if m["messages"], err = json.Marshal(out); err != nil {
		return nil, false
	}
	nb, err := json.Marshal(m)
	return nb, err == nil
}

// semcacheInfo is the usage extension of a cached or looked-up answer.
type semcacheInfo struct {
	Hit        bool    `json:"hit"`
	Tier       string  `json:"tier,omitempty"`
	Similarity float64 `json:"similarity"`
	Category   string  `json:"category"`
	Reason     string  `json:"reason,omitempty"`
	LookupMs   float64 `json:"lookup_ms,omitempty"`
}

type semcacheUsage struct {
	usage
	Semcache semcacheInfo `json:"semcache"`
}

// replay answers from the cache as the engine would have.
func (s *Server) replay(w http.ResponseWriter, req *semcache.Request, f semcacheFields, res *semcache.Result, took time.Duration) {
	a := res.Answer
	info := semcacheInfo{Hit: true, Tier: res.Tier, Similarity: res.Similarity, Category: res.Category, LookupMs: float64(took.Microseconds()) / 1000}
	w.Header().Set("X-Semcache", fmt.Sprintf("hit; tier=%s; similarity=%.4f; category=%s", res.Tier, res.Similarity, res.Category))
	u := semcacheUsage{usage: usage{PromptTokens: a.PromptTokens, CompletionTokens: a.CompletionTokens, TotalTokens: a.PromptTokens + a.CompletionTokens,
		PromptTokensDetails: &promptDetail{CachedTokens: a.PromptTokens}}, Semcache: info}
	ub, _ := json.Marshal(u)
	id, created := newID("cmpl-"), time.Now().Unix()
	if req.Chat {
		id = newID("chatcmpl-")
	}
	if !req.Stream {
		if req.Chat {
			resp := struct {
				chatCompletion
				Usage json.RawMessage `json:"usage"`
			}{chatCompletion: chatCompletion{ID: id, Object: "chat.completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint}, Usage: ub}
			for i, c := range a.Choices {
				resp.Choices = append(resp.Choices, chatChoice{Index: i, Message: responseMessage{Role: "assistant", Content: &c.Text}, Logprobs: jsonNull, FinishReason: c.Finish})
			}
			writeJSON(w, http.StatusOK, resp)
			return
		}
		resp := textCompletion{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: ub}
		for i := range a.Choices {
			resp.Choices = append(resp.Choices, textChoice{Text: a.Choices[i].Text, Index: i, Logprobs: jsonNull, FinishReason: &a.Choices[i].Finish})
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	out := &sse{w: w, rc: http.NewResponseController(w)}
	var usageField json.RawMessage
	includeUsage := f.StreamOptions != nil && f.StreamOptions.IncludeUsage
	if includeUsage {
		usageField = jsonNull
	}
	for i, c := range a.Choices {
		text, finish := c.Text, c.Finish
		if req.Chat {
			empty := ""
			base := chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: usageField}
			for _, d := range []chatChunkChoice{
				{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}, Logprobs: jsonNull},
				{Index: i, Delta: chatDelta{Content: &text}, Logprobs: jsonNull},
				{Index: i, Logprobs: jsonNull, FinishReason: &finish},
			} {
				if d.Delta.Content != nil && *d.Delta.Content == "" && d.Delta.Role == "" {
					continue
				}
				ch := base
				ch.Choices = []chatChunkChoice{d}
				out.send(ch)
			}
			continue
		}
		base := textCompletion{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: usageField}
		for _, tc := range []textChoice{{Text: text, Index: i, Logprobs: jsonNull}, {Index: i, Logprobs: jsonNull, FinishReason: &finish}} {
			ch := base
			ch.Choices = []textChoice{tc}
			out.send(ch)
		}
	}
	if includeUsage {
		if req.Chat {
			out.send(chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Choices: []chatChunkChoice{}, Usage: ub})
		} else {
			out.send(textCompletion{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Choices: []textChoice{}, Usage: ub})
		}
	}
	out.send("[DONE]")
}

// answerRecorder passes a fresh answer through to the client and keeps
// what the cache stores: a whole response is held until the handler is
// done (so that usage.semcache can be added), a stream is passed on as it
// comes and read on the side.
type answerRecorder struct {
	http.ResponseWriter
	stream, chat bool
	code         int
	buf          bytes.Buffer
	failed       bool
	texts        []strings.Builder
	finishes     []string
	usage        *usage
	pending      []byte // a stream's partial line
}

// WriteHeader records the status; a whole response's waits for finish.
func (a *answerRecorder) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
	if a.stream || code != http.StatusOK {
		a.ResponseWriter.WriteHeader(code)
	}
}

// Write passes stream data on, and holds a whole response.
func (a *answerRecorder) Write(b []byte) (int, error) {
	if a.code == 0 {
		a.WriteHeader(http.StatusOK)
	}
	if a.code != http.StatusOK {
		return a.ResponseWriter.Write(b)
	}
	if !a.stream {
		return a.buf.Write(b)
	}
	a.pending = append(a.pending, b...)
	for {
		i := bytes.IndexByte(a.pending, '\n')
		if i < 0 {
			break
		}
		a.event(a.pending[:i])
		a.pending = a.pending[i+1:]
	}
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush the stream.
func (a *answerRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }

func (a *answerRecorder) choice(i int) bool {
	if i < 0 || i > 1024 {
		a.failed = true
		return false
	}
	for len(a.texts) <= i {
		a.texts = append(a.texts, strings.Builder{})
		a.finishes = append(a.finishes, "")
	}
	return true
}

// event reads one line of a stream.
func (a *answerRecorder) event(line []byte) {
	data, ok := bytes.CutPrefix(line, []byte("data: "))
	if !ok || string(data) == "[DONE]" {
		return
	}
	var ev struct {
		Error   json.RawMessage `json:"error"`
		Choices []struct {
			Index        int     `json:"index"`
			Text         string  `json:"text"`
			FinishReason *string `json:"finish_reason"`
			Delta        struct {
				Content *string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
	if json.Unmarshal(data, &ev) != nil || len(ev.Error) > 0 {
		a.failed = true
		return
	}
	for _, c := range ev.Choices {
		if !a.choice(c.Index) {
			return
		}
		if a.chat && c.Delta.Content != nil {
			a.texts[c.Index].WriteString(*c.Delta.Content)
		} else if !a.chat {
			a.texts[c.Index].WriteString(c.Text)
		}
		if c.FinishReason != nil {
			a.finishes[c.Index] = *c.FinishReason
		}
	}
	if ev.Usage != nil {
		a.usage = ev.Usage
	}
}

// finish writes a held whole response, with usage.semcache added.
func (a *answerRecorder) finish() {
	if a.stream || a.code != http.StatusOK {
		return
	}
	var resp map[string]any
	dec := json.NewDecoder(bytes.NewReader(a.buf.Bytes()))
	dec.UseNumber()
	if dec.Decode(&resp) != nil {
		a.failed = true
		a.ResponseWriter.WriteHeader(a.code)
		a.ResponseWriter.Write(a.buf.Bytes())
		return
	}
	var parsed struct {
		Choices []struct {
			Index        int    `json:"index"`
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
			Message      struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
	json.Unmarshal(a.buf.Bytes(), &parsed)
	for _, c := range parsed.Choices {
		if !a.choice(c.Index) {
			break
		}
		if a.chat {
			a.texts[c.Index].WriteString(c.Message.Content)
		} else {
			a.texts[c.Index].WriteString(c.Text)
		}
		a.finishes[c.Index] = c.FinishReason
	}
	a.usage = parsed.Usage
	miss := semcacheInfo{Category: "", Reason: "miss"}
	if h := a.Header().Get("X-Semcache"); strings.HasPrefix(h, "bypass") {
		miss.Reason = "bypass"
	} else {
		for _, kv := range strings.Split(h, "; ") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "reason":
				miss.Reason = v
			case "category":
				miss.Category = v
			case "similarity":
				fmt.Sscanf(v, "%g", &miss.Similarity)
			}
		}
	}
	if u, ok := resp["usage"].(map[string]any); ok {
		u["semcache"] = miss
	}
	out, err := json.Marshal(resp)
	if err != nil {
		out = a.buf.Bytes()
	} else {
		out = append(out, '\n')
	}
	a.ResponseWriter.WriteHeader(a.code)
	a.ResponseWriter.Write(out)
}

// answer returns what the response held.
func (a *answerRecorder) answer() *semcache.Answer {
	out := &semcache.Answer{}
	for i := range a.texts {
		out.Choices = append(out.Choices, semcache.Choice{Text: a.texts[i].String(), Finish: a.finishes[i]})
	}
	if a.usage != nil {
		out.PromptTokens, out.CompletionTokens = a.usage.PromptTokens, a.usage.CompletionTokens
	}
	return out
}

// semcacheCollector exports the cache's counters per category and tier,
// read at each scrape.
func semcacheCollector(c *semcache.Cache) metric.Collector {
	descs := []metric.Desc{
		{Name: "kvserve_semcache_hits_total", Help: "Response-cache hits by category and tier (exact, surface, semantic).", Type: "counter", Labels: []string{"category", "tier"}},
		{Name: "kvserve_semcache_misses_total", Help: "Response-cache misses by category and reason.", Type: "counter", Labels: []string{"category", "reason"}},
		{Name: "kvserve_semcache_not_stored_total", Help: "Answers not stored, by category and reason (sampled, truncated, …).", Type: "counter", Labels: []string{"category", "reason"}},
		{Name: "kvserve_semcache_stores_total", Help: "Answers stored, by category.", Type: "counter", Labels: []string{"category"}},
		{Name: "kvserve_semcache_evictions_total", Help: "Entries evicted by the category's quota.", Type: "counter", Labels: []string{"category"}},
		{Name: "kvserve_semcache_expired_total", Help: "Entries dropped at the end of their TTL.", Type: "counter", Labels: []string{"category"}},
		{Name: "kvserve_semcache_audits_total", Help: "False-hit audits of semantic hits (audit_rate of them re-run through the model) by category and result: match, mismatch (the model answered otherwise), error.", Type: "counter", Labels: []string{"category", "result"}},
		{Name: "kvserve_semcache_entries", Help: "Entries held, by category.", Type: "gauge", Labels: []string{"category"}},
		{Name: "kvserve_semcache_bytes", Help: "Bytes held (answers, texts, embeddings), by category.", Type: "gauge", Labels: []string{"category"}},
	}
	return metric.NewCollectorFunc(descs, func(emit func(string, float64, ...string)) {
		for _, st := range c.Stats() {
			for tier, n := range st.Hits {
				emit("kvserve_semcache_hits_total", float64(n), st.Category, tier)
			}
			for reason, n := range st.Misses {
				emit("kvserve_semcache_misses_total", float64(n), st.Category, reason)
			}
			for reason, n := range st.Rejected {
				emit("kvserve_semcache_not_stored_total", float64(n), st.Category, reason)
			}
			for result, n := range st.Audits {
				emit("kvserve_semcache_audits_total", float64(n), st.Category, result)
			}
			emit("kvserve_semcache_stores_total", float64(st.Stores), st.Category)
			emit("kvserve_semcache_evictions_total", float64(st.Evicted), st.Category)
			emit("kvserve_semcache_expired_total", float64(st.Expired), st.Category)
			emit("kvserve_semcache_entries", float64(st.Entries), st.Category)
			emit("kvserve_semcache_bytes", float64(st.Bytes), st.Category)
		}
	})
}
