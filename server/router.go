package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/kvserve/kvserve/internal/metric"
)

// Router serves several models from one address: each request goes to the
// Server of the model it names (the "model" field of a POST body, the id
// of /v1/models/{id}); a request that names none goes to the first model.
// /v1/models lists every model, /health is ok while all are, and
// /metrics writes every model's series, told apart by model_name.
type Router struct {
	servers []*Server
	byName  map[string]*Server
}

// NewRouter returns a router over servers, whose model names must differ.
func NewRouter(servers ...*Server) (*Router, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("server: a router needs at least one model")
	}
	r := &Router{servers: servers, byName: map[string]*Server{}}
	for _, s := range servers {
		name := s.cfg.ModelName
		if r.byName[name] != nil {
			return nil, fmt.Errorf("server: two models are named %q; name them apart with NAME=PATH", name)
		}
		r.byName[name] = s
		if s.cfg.Encoder != nil {
			if r.byName[s.cfg.EncoderName] != nil {
				return nil, fmt.Errorf("server: the encoder %q has the name of a model", s.cfg.EncoderName)
			}
			r.byName[s.cfg.EncoderName] = s
		}
	}
	return r, nil
}

// Drain makes every model's /health answer 503.
func (rt *Router) Drain() {
	for _, s := range rt.servers {
		s.Drain()
	}
}

// names lists the served models for error messages.
func (rt *Router) names() string {
	var n []string
	for _, s := range rt.servers {
		n = append(n, "`"+s.cfg.ModelName+"`")
	}
	return strings.Join(n, ", ")
}

// ServeHTTP routes one request.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	first := rt.servers[0]
	switch {
	case r.URL.Path == "/v1/models" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		if e := first.authorize(r); e != nil {
			first.ServeHTTP(w, r) // answers the 401
			return
		}
		list := modelList{Object: "list"}
		for _, s := range rt.servers {
			list.Data = append(list.Data, s.cards()...)
		}
		writeJSON(w, http.StatusOK, list)
	case r.URL.Path == "/health":
		for _, s := range rt.servers {
			if s.drain.Load() {
				s.ServeHTTP(w, r)
				return
			}
		}
		first.ServeHTTP(w, r)
	case r.URL.Path == "/metrics":
		if e := first.authorize(r); e != nil { // only with Config.MetricsAuth
			first.ServeHTTP(w, r)
			return
		}
		regs := make([]*metric.Registry, len(rt.servers))
		for i, s := range rt.servers {
			regs[i] = s.metrics.reg
		}
		metric.Handler(regs...).ServeHTTP(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/models/"):
		rt.to(w, r, strings.TrimPrefix(r.URL.Path, "/v1/models/"))
	case r.Method == http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, first.cfg.MaxBodyBytes))
		if err != nil {
			first.ServeHTTP(w, requestWithBody(r, body)) // the server answers 413 or 400
			return
		}
		var named struct {
			Model string `json:"model"`
		}
		json.Unmarshal(body, &named) // a malformed body is the server's to reject
		rt.to(w, requestWithBody(r, body), named.Model)
	default:
		first.ServeHTTP(w, r)
	}
}

// to hands r to the server of model name ("" is the first model).
func (rt *Router) to(w http.ResponseWriter, r *http.Request, name string) {
	if name == "" {
		rt.servers[0].ServeHTTP(w, r)
		return
	}
	if s := rt.byName[name]; s != nil {
		s.ServeHTTP(w, r)
		return
	}
	if e := rt.servers[0].authorize(r); e != nil { // no model names before the key
		rt.servers[0].ServeHTTP(w, r)
		return
	}
	writeError(w, &apiError{Status: http.StatusNotFound, Message: fmt.Sprintf("The model `%s` does not exist; this server serves %s.", name, rt.names()),
		Type: "invalid_request_error", Param: strp("model"), Code: strp("model_not_found")})
}

// requestWithBody returns r reading body again.
func requestWithBody(r *http.Request, body []byte) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	return r2
}
