package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/tokenizer"
)

// fingerprint is the system_fingerprint of every response.
const fingerprint = "kvserve"

// maxStops is the most stop strings a request may give.
const maxStops = 16

// generation is a parsed chat or completion request, ready for the engine.
type generation struct {
	chat         bool
	prompt       []int
	promptParam  string // "messages" or "prompt", for errors
	job          engine.Job
	stream       bool
	includeUsage bool
	cacheSalt    *string    // the request's cache_salt, checked
	echo         bool       // completions: the prompt's text goes before the output
	promptText   string     // the prompt as text, for echo
	tools        *toolSetup // chat with tools, or nil
	structured   bool       // response_format json_object or json_schema
}

// chatCompletions answers POST /v1/chat/completions.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if e := s.decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	g, e := s.parseChat(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	s.generate(w, r, g)
}

// parseChat renders the messages with the chat template and checks the
// parameters.
func (s *Server) parseChat(req *chatRequest) (*generation, *apiError) {
	if e := s.checkModel(req.Model); e != nil {
		return nil, e
	}
	if len(req.Messages) == 0 {
		return nil, invalid("messages", "invalid_value", "messages must be a non-empty list")
	}
	for i, m := range req.Messages {
		if m.Role == "" {
			return nil, invalid(fmt.Sprintf("messages[%d].role", i), "invalid_value", "messages[%d] has no role", i)
		}
	}
	tools, e := s.parseTools(&req.sampling)
	if e != nil {
		return nil, e
	}
	msgs := req.Messages
	var docs []string
	if req.Documents != nil {
		if msgs, docs, e = s.placeDocuments(req, msgs); e != nil {
			return nil, e
		}
	}
	prompt, e := s.encodeChat(msgs, tools, s.b.ContextLength()-1)
	if e != nil {
		return nil, e
	}
	g := &generation{chat: true, prompt: prompt, promptParam: "messages", tools: tools}
	var reuse *engine.Reuse
	if docs != nil {
		text, e := s.renderChat(msgs, tools)
		if e != nil {
			return nil, e
		}
		if reuse, e = s.reuseFor(req, text, docs); e != nil {
			return nil, e
		}
		g.prompt = reuse.Prompt.Tokens() // each document tokenized on its own, as cached
	}
	maxTok := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		maxTok = req.MaxCompletionTokens
	}
	if e := s.parseSampling(&req.sampling, maxTok, g); e != nil {
		return nil, e
	}
	if e := s.constrainTools(g); e != nil {
		return nil, e
	}
	if reuse != nil {
		if g.job.Press != nil {
			return nil, invalid("documents", "unsupported_parameter", "documents cannot be combined with a KV press (kv_press)")
		}
		g.job.Reuse = reuse
	}
	return g, nil
}

// completions answers POST /v1/completions.
func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if e := s.decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	g, e := s.parseCompletion(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	s.generate(w, r, g)
}

// parseCompletion encodes the prompt (text as is, no BOS added, as kvserve
// run does) and checks the parameters; max_tokens defaults to 16 as in
// OpenAI's API.
func (s *Server) parseCompletion(req *completionRequest) (*generation, *apiError) {
	if e := s.checkModel(req.Model); e != nil {
		return nil, e
	}
	p := &req.Prompt
	if !p.set || p.count() == 0 {
		return nil, invalid("prompt", "invalid_value", "prompt is required")
	}
	if p.count() > 1 {
		return nil, invalid("prompt", "unsupported_parameter", "%d prompts in one request; send one prompt per request", p.count())
	}
	if e := s.needTokenizer("/v1/completions", "prompt"); e != nil {
		return nil, e
	}
	g := &generation{promptParam: "prompt"}
	if len(p.Texts) == 1 {
		var e *apiError
		if g.prompt, e = s.encodePrompt(p.Texts[0], "prompt", s.b.ContextLength()-1, tokenizer.EncodeOptions{}); e != nil {
			return nil, e
		}
		g.promptText = p.Texts[0]
	} else {
		g.prompt = p.IDs[0]
		if req.Echo {
			g.promptText = s.b.Tokenizer.Decode(validIDs(g.prompt, s.b.Net.Config.VocabSize))
		}
	}
	if e := chatOnlyTools(&req.sampling); e != nil {
		return nil, e
	}
	if req.MaxTokens == nil {
		n := 16 // OpenAI's default for completions
		req.MaxTokens = &n
	}
	if e := s.parseSampling(&req.sampling, req.MaxTokens, g); e != nil {
		return nil, e
	}
	return g, nil
}

// parseSampling checks the shared parameters and fills g's job.
func (s *Server) parseSampling(p *sampling, maxTokens *int, g *generation) *apiError {
	if e := p.unsupported(); e != nil {
		return e
	}
	limit := s.b.ContextLength()
	if n := len(g.prompt); n >= limit {
		return invalid(g.promptParam, "context_length_exceeded",
			"This model's maximum context length is %d tokens. However, your %s resulted in %d tokens, leaving no room to generate.", limit, g.promptParam, n)
	}
	if len(g.prompt) == 0 {
		return invalid(g.promptParam, "invalid_value", "the %s encode to no tokens", g.promptParam)
	}
	job := engine.Job{Prompt: g.prompt, IgnoreEOS: p.IgnoreEOS, Sampling: engine.Sampling{Temperature: 1, TopP: 1}}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return invalid("max_tokens", "invalid_value", "max_tokens %d must be ≥ 1", *maxTokens)
		}
		job.MaxTokens = *maxTokens
	}
	if t := p.Temperature; t != nil {
		if *t < 0 || *t > 2 || math.IsNaN(*t) {
			return invalid("temperature", "invalid_value", "temperature %v must be in [0, 2]", *t)
		}
		job.Sampling.Temperature = *t
	}
	if tp := p.TopP; tp != nil {
		switch {
		case *tp < 0 || *tp > 1 || math.IsNaN(*tp):
			return invalid("top_p", "invalid_value", "top_p %v must be in [0, 1]", *tp)
		case *tp == 0: // only the most likely token
			job.Sampling.TopK = 1
		default:
			job.Sampling.TopP = *tp
		}
	}
	if k := p.TopK; k != nil {
		switch {
		case *k < -1:
			return invalid("top_k", "invalid_value", "top_k %d must be ≥ 1, or 0 or -1 for all tokens", *k)
		case *k > 0 && (job.Sampling.TopK == 0 || *k < job.Sampling.TopK):
			job.Sampling.TopK = *k
		}
	}
	if p.Seed != nil {
		job.Sampling.Seed = uint64(*p.Seed)
	} else {
		job.Sampling.Seed = engine.RandomSeed()
	}
	if p.N != nil {
		if *p.N < 1 {
			return invalid("n", "invalid_value", "n %d must be ≥ 1", *p.N)
		}
		job.N = *p.N
	}
	if len(p.Stop) > maxStops {
		return invalid("stop", "invalid_value", "%d stop strings; at most %d", len(p.Stop), maxStops)
	}
	for _, st := range p.Stop {
		if st == "" {
			return invalid("stop", "invalid_value", "stop strings must not be empty")
		}
	}
	job.Stop = p.Stop
	if cs := p.CacheSalt; cs != nil && (*cs == "" || len(*cs) > maxCacheSalt) {
		return invalid("cache_salt", "invalid_value", "cache_salt must be a non-empty string of at most %d bytes", maxCacheSalt)
	}
	g.cacheSalt = p.CacheSalt
	if e := s.pressFor(p, &job); e != nil {
		return e
	}
	if e := s.retrievalFor(p, &job); e != nil {
		return e
	}
	if p.StreamOptions != nil && !p.Stream {
		return invalid("stream_options", "invalid_value", "stream_options is only allowed with stream: true")
	}
	g.stream = p.Stream
	g.includeUsage = p.StreamOptions != nil && p.StreamOptions.IncludeUsage
	g.job = job
	if e := s.parsePenalties(p, &g.job); e != nil {
		return e
	}
	if e := s.parseLogprobs(p, g); e != nil {
		return e
	}
	return s.parseResponseFormat(p, g)
}

// validIDs returns the ids that name tokens (the engine rejects the
// others; echo must not fail first).
func validIDs(ids []int, vocab int) []int {
	out := make([]int, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < vocab {
			out = append(out, id)
		}
	}
	return out
}

// maxCacheSalt bounds a request's cache_salt.
const maxCacheSalt = 256

// tenantSalt returns the prefix-cache salt of a request: the SHA-256 of the
// API key it presents (Authorization: Bearer …), the request's cache_salt,
// or both. Requests of different salts never reuse each other's KV, so a
// client can neither read nor time another key's cached prompts, and one
// key may split its traffic further with cache_salt. Requests with neither
// share the "" salt.
func tenantSalt(r *http.Request, cacheSalt *string) string {
	var salt string
	if auth := r.Header.Get("Authorization"); auth != "" {
		key := strings.TrimSpace(auth)
		if scheme, rest, ok := strings.Cut(key, " "); ok && strings.EqualFold(scheme, "Bearer") {
			key = strings.TrimSpace(rest)
		}
		if key != "" {
			sum := sha256.Sum256([]byte(key))
			salt = "key:" + hex.EncodeToString(sum[:16])
		}
	}
	if cacheSalt != nil {
		if salt != "" {
			salt += " "
		}
		salt += "salt:" + *cacheSalt
	}
	return salt
}

// generate submits g and writes the response, whole or streamed.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, g *generation) {
	s.tenant(r, g)
	sub, err := s.sched.Submit(r.Context(), g.job)
	if err != nil {
		writeError(w, engineError(err, g.promptParam))
		return
	}
	pressName := ""
	if g.job.Press != nil {
		pressName = g.job.Press.Name
	}
	st := track(w, sub, pressName)
	id := newID("cmpl-")
	if g.chat {
		id = newID("chatcmpl-")
	}
	if g.stream {
		s.streamOut(w, r, g, st, id)
		return
	}
	outs := s.choiceOuts(g, st.N)
	var promptLP []engine.Logprob
	for {
		ev, err := st.Recv(r.Context())
		if err == io.EOF {
			break
		}
		if err != nil { // the client went away; the engine drops the request
			return
		}
		if ev.Err != nil {
			if !clientGone(r.Context(), ev.Err) {
				writeError(w, engineError(ev.Err, g.promptParam))
			}
			return
		}
		if ev.Prompt != nil {
			promptLP = ev.Prompt
			continue
		}
		o := outs[ev.Choice]
		if ev.Logprob != nil {
			o.lps = append(o.lps, *ev.Logprob)
		}
		o.push(ev.Text)
		if ev.Finish != "" {
			o.flush()
			o.finish = string(ev.Finish)
		}
	}
	u := toUsage(st.Usage())
	created := time.Now().Unix()
	if g.chat {
		resp := chatCompletion{ID: id, Object: "chat.completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: u}
		for i, o := range outs {
			msg, finish := o.message()
			lp := jsonNull
			if g.job.Logprobs {
				lp = s.chatLogprobsOf(o.lps)
			}
			resp.Choices = append(resp.Choices, chatChoice{Index: i, Message: msg, Logprobs: lp, FinishReason: finish})
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	ub, _ := json.Marshal(u)
	resp := textCompletion{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: ub}
	for i, o := range outs {
		text := o.content.String()
		lp := jsonNull
		if g.job.Logprobs {
			var ids []int
			if g.echo {
				ids = g.prompt
			}
			lp = s.legacyLogprobsOf(ids, promptLP, o.lps, 0)
		}
		if g.echo {
			text = g.promptText + text
		}
		resp.Choices = append(resp.Choices, textChoice{Text: text, Index: i, Logprobs: lp, FinishReason: &o.finish})
	}
	writeJSON(w, http.StatusOK, resp)
}

// choiceOuts returns a choiceOut for each of n choices.
func (s *Server) choiceOuts(g *generation, n int) []*choiceOut {
	outs := make([]*choiceOut, n)
	for i := range outs {
		outs[i] = &choiceOut{tools: g.tools}
	}
	return outs
}

func toUsage(u engine.Usage) usage {
	return usage{
		PromptTokens:        u.PromptTokens,
		CompletionTokens:    u.CompletionTokens,
		TotalTokens:         u.PromptTokens + u.CompletionTokens,
		PromptTokensDetails: &promptDetail{CachedTokens: u.CachedTokens},
	}
}

// sse writes server-sent events, flushing each.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	err     error
	timeout time.Duration // for writing each event; none if ≤ 0
}

// send writes one event holding v as JSON (or the raw text of a string).
func (e *sse) send(v any) {
	if e.err != nil {
		return
	}
	var data []byte
	if s, ok := v.(string); ok {
		data = []byte(s)
	} else if data, e.err = json.Marshal(v); e.err != nil {
		return
	}
	buf := make([]byte, 0, len(data)+8)
	buf = append(append(append(buf, "data: "...), data...), "\n\n"...)
	if e.timeout > 0 {
		e.rc.SetWriteDeadline(time.Now().Add(e.timeout))
	}
	if _, e.err = e.w.Write(buf); e.err == nil {
		e.err = e.rc.Flush()
	}
}

// streamOut writes a generation as OpenAI streams it: for chat, a chunk
// with the role for each choice, then a chunk per piece of text, a chunk
// with each choice's finish reason, with stream_options.include_usage a
// last chunk with the usage and no choices, then [DONE].
func (s *Server) streamOut(w http.ResponseWriter, r *http.Request, g *generation, st trackedStream, id string) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	out := &sse{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}
	out.err = out.rc.Flush()
	created := time.Now().Unix()
	var usageField json.RawMessage
	if g.includeUsage {
		usageField = jsonNull
	}
	// chunk makes a chunk of one choice: new content, tool-call deltas,
	// logprobs (JSON, or nil), a finish reason.
	chunk := func(choice int, text *string, calls []toolCallDelta, fn *toolFunctionDelta, lp json.RawMessage, finish string, role bool) any {
		var fr *string
		if finish != "" {
			fr = &finish
		}
		if lp == nil {
			lp = jsonNull
		}
		if g.chat {
			c := chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: usageField,
				Choices: []chatChunkChoice{{Index: choice, Delta: chatDelta{Content: text, ToolCalls: calls, FunctionCall: fn}, Logprobs: lp, FinishReason: fr}}}
			if role {
				c.Choices[0].Delta.Role = "assistant"
			}
			return c
		}
		t := ""
		if text != nil {
			t = *text
		}
		return textCompletion{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Usage: usageField,
			Choices: []textChoice{{Text: t, Index: choice, Logprobs: lp, FinishReason: fr}}}
	}
	outs := s.choiceOuts(g, st.N)
	offsets := make([]int, st.N) // completions: text offsets of the next logprobs
	// logprobs returns a choice's logprobs not yet sent, as JSON.
	logprobs := func(choice int) json.RawMessage {
		o := outs[choice]
		if !g.job.Logprobs || o.pending == len(o.lps) {
			return nil
		}
		lps := o.takeLogprobs()
		if g.chat {
			return s.chatLogprobsOf(lps)
		}
		data := s.legacyLogprobsOf(nil, nil, lps, offsets[choice])
		for _, lp := range lps {
			t, _ := s.tokenText(lp.Token)
			offsets[choice] += len(t)
		}
		return data
	}
	if g.chat {
		empty := ""
		for i := range st.N {
			out.send(chunk(i, &empty, nil, nil, nil, "", true))
		}
	}
	echoed := false
	for out.err == nil {
		ev, err := st.Recv(r.Context())
		if err == io.EOF {
			break
		}
		if err != nil {
			return // the client went away; the engine drops the request
		}
		if ev.Err != nil {
			if !clientGone(r.Context(), ev.Err) {
				out.send(map[string]*apiError{"error": engineError(ev.Err, g.promptParam)})
				out.send("[DONE]")
			}
			return
		}
		if g.echo && !echoed { // the prompt first, with its logprobs if asked
			echoed = true
			for i := range st.N {
				var lp json.RawMessage
				if g.job.Logprobs {
					lp = s.legacyLogprobsOf(g.prompt, ev.Prompt, nil, 0)
					offsets[i] = len(g.promptText)
				}
				text := g.promptText
				out.send(chunk(i, &text, nil, nil, lp, "", false))
			}
		}
		if ev.Prompt != nil {
			continue
		}
		o := outs[ev.Choice]
		if ev.Logprob != nil {
			o.lps = append(o.lps, *ev.Logprob)
		}
		text, calls := o.push(ev.Text)
		if ev.Finish != "" {
			t2, c2 := o.flush()
			text += t2
			calls = append(calls, c2...)
		}
		if text != "" || len(calls) > 0 {
			if text != "" {
				out.send(chunk(ev.Choice, &text, nil, nil, logprobs(ev.Choice), "", false))
			}
			s.sendCalls(out, g.tools, calls, len(o.calls)-len(calls), func(d []toolCallDelta, fn *toolFunctionDelta) any {
				return chunk(ev.Choice, nil, d, fn, logprobs(ev.Choice), "", false)
			})
		}
		if ev.Finish != "" {
			o.finish = string(ev.Finish)
			_, finish := o.message()
			if !g.chat {
				finish = o.finish
			}
			out.send(chunk(ev.Choice, nil, nil, nil, logprobs(ev.Choice), finish, false))
		}
	}
	if out.err != nil {
		return
	}
	if g.includeUsage {
		u, _ := json.Marshal(toUsage(st.Usage()))
		if g.chat {
			out.send(chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Choices: []chatChunkChoice{}, Usage: u})
		} else {
			out.send(textCompletion{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelName, SystemFingerprint: fingerprint, Choices: []textChoice{}, Usage: u})
		}
	}
	out.send("[DONE]")
}

// pressFor sets the job's KV-cache press: the request's kv_press and
// kv_press_ratio, each falling back to the server's (Config.Press,
// Config.PressRatio); "none" or "" means none.
func (s *Server) pressFor(p *sampling, job *engine.Job) *apiError {
	name, ratio := s.cfg.Press, s.cfg.PressRatio
	param := "kv_press"
	if p.KVPress != nil {
		name = *p.KVPress
	}
	if p.KVPressRatio != nil {
		ratio, param = *p.KVPressRatio, "kv_press_ratio"
		if ratio < 0 || ratio >= 1 || math.IsNaN(ratio) {
			return invalid(param, "invalid_value", "kv_press_ratio %v must be in [0, 1): the fraction of the prompt's KV cache removed", ratio)
		}
	}
	if name == "" || name == "none" {
		return nil
	}
	pr, err := press.Parse(name, ratio)
	if err != nil {
		return invalid("kv_press", "invalid_value", "%v", err)
	}
	job.Press = pr
	return nil
}
