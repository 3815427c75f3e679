// Package server is kvserve's OpenAI-compatible HTTP API: chat and text
// completions (whole or streamed as server-sent events), embeddings, the
// model list, a health check and Prometheus metrics. It parses requests,
// hands generations to an engine.Scheduler and writes what comes back; it
// does no tensor math.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/retrieve"
	"github.com/kvserve/kvserve/semcache"
)

// Config configures a Server. The zero value of each field picks a default.
type Config struct {
	// ModelName is the model's id in /v1/models and in responses; requests
	// naming another model get 404. The bundle's name if "".
	ModelName string
	// Metrics are served at /metrics; New makes its own if nil (then the
	// scheduler has no observer, and latency histograms stay empty).
	Metrics *Metrics
	// Logger logs each request; slog.Default() if nil.
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body; 16 MiB if 0.
	MaxBodyBytes int64
	// Press names the KV-cache press applied to every prompt once it is
	// computed (press.Parse syntax, e.g. "keydiff" or "snapkv+kivi4"), at
	// PressRatio; "" or "none" for none. Requests override both with the
	// kv_press and kv_press_ratio fields.
	Press      string
	PressRatio float64
	// APIKeys, when any, are the keys clients must send as
	// "Authorization: Bearer KEY" on every path but /health (and
	// /metrics, unless MetricsAuth); others get a 401.
	APIKeys []string
	// MetricsAuth puts /metrics behind the API keys too.
	MetricsAuth bool

	// Hostile-input bounds (limits.go, tenant.go, embed_sched.go).

	// BodyTimeout bounds how long a request body may take to arrive (the
	// headers are bounded by http.Server.ReadHeaderTimeout); 20 s if 0,
	// none if < 0.
	BodyTimeout time.Duration
	// WriteTimeout bounds each write of a response: a whole JSON answer,
	// or one event of a stream; 30 s if 0, none if < 0.
	WriteTimeout time.Duration
	// EmbedMaxInputs and EmbedMaxTokens bound one embeddings request: its
	// inputs, and their tokens together; 256 and 4 × the context if 0.
	EmbedMaxInputs, EmbedMaxTokens int
	// AnonymousCache says what prefix-cache reuse requests without an API
	// key or cache_salt get: "client" (default: only requests from the
	// same client address share), "none", or "shared" (all of them, which
	// lets clients probe each other's prompts).
	AnonymousCache string
	// SpecialInMessages recognises special tokens (<|im_start|>) written
	// in chat message contents, as the template's own markers are. Off by
	// default: a user cannot forge a turn.
	SpecialInMessages bool
	// Blender, if set, enables the documents extension (documents.go):
	// documents' KV is kept in its chunk cache and reused by the method
	// named Reuse (blend.Parse; "cacheblend" if "").
	Blender *blend.Blender
	Reuse   string
	// SemCache, if set, answers repeated and paraphrased completions from
	// a response cache (see semcache.go).
	SemCache *semcache.Cache
	// Encoder, if set, is a sentence encoder that /v1/embeddings serves
	// to requests whose model is EncoderName (listed in /v1/models).
	Encoder     Encoder
	EncoderName string
	// Retrieval names the retrieval method of every request's decode steps
	// (package retrieve) at RetrievalBudget, with the unread KV in a cold
	// memory tier when RetrievalCold; "" or "none" for none. Requests
	// override the method and budget with kv_retrieval and
	// kv_retrieval_budget.
	Retrieval       string
	RetrievalBudget retrieve.Budget
	RetrievalCold   bool
}

// Server serves the API for one model. It is an http.Handler.
type Server struct {
	b       *engine.Bundle
	sched   *engine.Scheduler
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	mux     *http.ServeMux
	created int64
	drain   atomic.Bool
	keys    *keyring // nil: no API keys, open to all

	sentenceTable // for sentencekv retrieval (retrieval.go)
}

// New returns a server that generates with sched over b.
func New(b *engine.Bundle, sched *engine.Scheduler, cfg Config) *Server {
	if cfg.ModelName == "" {
		cfg.ModelName = b.Name
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.setDefaults(b)
	s := &Server{b: b, sched: sched, cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, mux: http.NewServeMux(), created: time.Now().Unix(), keys: newKeyring(cfg.APIKeys)}
	s.cfg.APIKeys = nil // kept as digests only
	if s.cfg.MaxBodyBytes <= 0 {
		s.cfg.MaxBodyBytes = s.defaultMaxBody()
	}
	s.metrics.SetModel(cfg.ModelName)
	s.metrics.watch(sched)
	if cfg.Blender != nil {
		s.metrics.watchChunks(cfg.Blender)
	}
	route := func(path, method string, h http.HandlerFunc) {
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
				w.Header().Set("Allow", method)
				writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Message: fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, method), Type: "invalid_request_error", Code: strp("method_not_allowed")})
				return
			}
			h(w, r)
		})
	}
	cached := s.semcacheHook()
	route("/v1/chat/completions", http.MethodPost, cached(s.chatCompletions))
	route("/v1/completions", http.MethodPost, cached(s.completions))
	route("/v1/embeddings", http.MethodPost, s.embeddings)
	route("/v1/models", http.MethodGet, s.models)
	route("/v1/models/{id...}", http.MethodGet, s.model)
	route("/health", http.MethodGet, s.health)
	route("/tokenize", http.MethodPost, s.tokenize)
	route("/detokenize", http.MethodPost, s.detokenize)
	metrics := s.metrics.Handler()
	route("/metrics", http.MethodGet, metrics.ServeHTTP)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), Type: "invalid_request_error", Code: strp("not_found")})
	})
	return s
}

// ModelName is the name clients use for the served model.
func (s *Server) ModelName() string { return s.cfg.ModelName }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Drain makes /health answer 503, so that a load balancer stops sending
// requests while the server shuts down.
func (s *Server) Drain() { s.drain.Store(true) }

// ServeHTTP serves one request, logging it and counting it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestID(r)
	w.Header().Set(RequestIDHeader, id)
	rec := &statusWriter{ResponseWriter: w, timeout: s.cfg.WriteTimeout}
	if s.cfg.WriteTimeout > 0 { // the last response's deadline may have passed on a kept-alive connection
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
	}
	if e := s.authorize(r); e != nil {
		writeUnauthorized(rec, r, e)
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	code := rec.code
	if code == 0 {
		code = http.StatusOK
		rec.code = code
	}
	path := r.URL.Path
	if _, pattern := s.mux.Handler(r); pattern == "/" {
		path = "other" // keep the label set small
	} else if pattern != "" {
		path = pattern
	}
	s.metrics.requests.WithLabelValues(path, strconv.Itoa(code)).Inc()
	if path != "/metrics" && path != "/health" {
		s.logRequest(r, rec, id, path, start)
	}
}

// Write records an implicit 200.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// writeJSON writes v with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		status, buf = http.StatusInternalServerError, []byte(`{"error":{"message":"response encoding failed","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(buf, '\n'))
}

// writeError writes an error in OpenAI's shape.
func writeError(w http.ResponseWriter, e *apiError) {
	if sw, ok := w.(*statusWriter); ok {
		sw.errReason = e.Message
	}
	if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, struct {
		Error *apiError `json:"error"`
	}{e})
}

// engineError turns an error of the engine into an API error.
func engineError(err error, promptParam string) *apiError {
	var pe *engine.PromptError
	var pa *engine.ParamError
	switch {
	case errors.Is(err, engine.ErrQueueFull):
		return &apiError{Status: http.StatusTooManyRequests, Message: "the server's request queue is full; retry later", Type: "rate_limit_error", Code: strp("rate_limit_exceeded")}
	case errors.Is(err, engine.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Message: "the server is shutting down", Type: "server_error", Code: strp("unavailable")}
	case errors.As(err, &pe):
		return invalid(promptParam, "invalid_prompt", "%s", pe.Msg)
	case errors.As(err, &pa):
		param := pa.Param
		if param == "sampling" {
			param = ""
		}
		return invalid(param, "invalid_value", "%s", pa.Msg)
	}
	return &apiError{Status: http.StatusInternalServerError, Message: err.Error(), Type: "server_error", Code: strp("internal_error")}
}

// decode reads a JSON request body into v, mapping every failure to a 400
// (or a 413 for a body over the limit).
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) *apiError {
	data, e := s.readBody(w, r)
	if e != nil {
		return e
	}
	if e := s.checkStrings(data); e != nil {
		return e
	}
	if err := json.Unmarshal(data, v); err != nil {
		if e := partError(err); e != nil {
			return e
		}
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			param := strings.TrimPrefix(te.Field, "sampling.") // the embedded struct
			field := param
			if field == "" {
				field = "request body"
			}
			return invalid(param, "invalid_type", "%s: want %s, got a JSON %s", field, describe(te.Type), te.Value)
		case errors.As(err, &se):
			return invalid("", "invalid_json", "request body is not valid JSON: %v (at byte %d)", err, se.Offset)
		}
		return invalid("", "invalid_json", "request body: %v", err)
	}
	if _, ok := v.(*chatRequest); ok {
		return checkChatExtras(data)
	}
	return nil
}

// checkModel checks a request's model name.
func (s *Server) checkModel(name string) *apiError {
	if name == "" || name == s.cfg.ModelName {
		return nil
	}
	if s.servesEncoder(name) {
		return invalid("model", "model_not_supported", "`%s` is a sentence encoder: it answers /v1/embeddings only; this server generates with `%s`", name, s.cfg.ModelName)
	}
	return &apiError{Status: http.StatusNotFound, Message: fmt.Sprintf("The model `%s` does not exist; this server serves `%s`.", name, s.cfg.ModelName), Type: "invalid_request_error", Param: strp("model"), Code: strp("model_not_found")}
}

// card describes the served model.
func (s *Server) card() modelCard {
	return modelCard{ID: s.cfg.ModelName, Object: "model", Created: s.created, OwnedBy: "kvserve", MaxModelLen: s.b.ContextLength()}
}

// models answers GET /v1/models.
func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, modelList{Object: "list", Data: s.cards()})
}

// cards describes the served model and the encoder, if any.
func (s *Server) cards() []modelCard {
	if s.cfg.Encoder != nil {
		return []modelCard{s.card(), s.encoderCard()}
	}
	return []modelCard{s.card()}
}

// model answers GET /v1/models/{id}.
func (s *Server) model(w http.ResponseWriter, r *http.Request) {
	if s.servesEncoder(r.PathValue("id")) {
		writeJSON(w, http.StatusOK, s.encoderCard())
		return
	}
	if e := s.checkModel(r.PathValue("id")); e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, s.card())
}

// health answers GET /health: 200 while serving, 503 while draining.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.drain.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// newID returns a response id with the given prefix.
func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// clientGone reports whether err means the client went away.
func clientGone(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}
