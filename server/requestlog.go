package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/kvserve/kvserve/engine"
)

// RequestIDHeader carries a request's id: taken from the client when it
// sends one (trimmed to 64 printable characters), made up otherwise, and
// always sent back.
const RequestIDHeader = "X-Request-Id"

// requestID returns the client's request id if usable, else a new one.
func requestID(r *http.Request) string {
	id := r.Header.Get(RequestIDHeader)
	if len(id) > 64 {
		id = id[:64]
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			id = ""
			break
		}
	}
	if id == "" {
		var b [12]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	return id
}

// statusWriter records what the request log needs: the status code, the
// reason of an error answer and, for generations, tokens and times. Unwrap
// lets http.ResponseController reach the connection to flush server-sent
// events.
type statusWriter struct {
	http.ResponseWriter
	code    int
	timeout time.Duration // for writing the response; none if ≤ 0
	// errReason is the message of an error answer (OpenAI's error.message).
	errReason string
	gen       *genRecord
}

// WriteHeader records the first status code and starts the write timeout.
func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
		if w.timeout > 0 {
			http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Now().Add(w.timeout))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap returns the wrapped writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// genRecord is what one generation did, for its log line and histograms.
type genRecord struct {
	submitted, first, end time.Time
	usage                 engine.Usage
	finish                string
	press                 string
}

// trackedStream reads a generation's events and notes the times of its
// first event and of its end, and its usage.
type trackedStream struct {
	*engine.Stream
	rec *genRecord
}

// track starts the record of a generation submitted just now; pressName
// is "" without a press.
func track(w http.ResponseWriter, st *engine.Stream, pressName string) trackedStream {
	rec := &genRecord{submitted: time.Now(), press: pressName}
	if sw, ok := w.(*statusWriter); ok {
		sw.gen = rec
	}
	return trackedStream{st, rec}
}

// Recv returns the next event, as engine.Stream.Recv does.
func (t trackedStream) Recv(ctx context.Context) (engine.Event, error) {
	ev, err := t.Stream.Recv(ctx)
	now := time.Now()
	if t.rec.first.IsZero() && err == nil && ev.Err == nil {
		t.rec.first = now
	}
	if ev.Finish != "" && t.rec.finish == "" {
		t.rec.finish = string(ev.Finish)
	}
	if err == io.EOF || ev.Err != nil {
		t.rec.end = now
		t.rec.usage = t.Stream.Usage()
	}
	return ev, err
}

// logRequest writes the request's log line and feeds the per-request
// histograms.
func (s *Server) logRequest(r *http.Request, sw *statusWriter, id, path string, start time.Time) {
	elapsed := time.Since(start)
	attrs := []slog.Attr{
		slog.String("id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", sw.code), slog.Float64("duration_s", elapsed.Seconds()), slog.String("remote", r.RemoteAddr),
	}
	if g := sw.gen; g != nil && !g.end.IsZero() {
		u := g.usage
		attrs = append(attrs, slog.Int("prompt_tokens", u.PromptTokens), slog.Int("cached_tokens", u.CachedTokens),
			slog.Int("completion_tokens", u.CompletionTokens), slog.String("finish", g.finish))
		if !g.first.IsZero() {
			attrs = append(attrs, slog.Float64("ttft_s", g.first.Sub(g.submitted).Seconds()))
		}
		if g.press != "" {
			attrs = append(attrs, slog.String("press", g.press),
				slog.Int64("kv_bytes_before", u.KVBytesBeforePress), slog.Int64("kv_bytes_after", u.KVBytesAfterPress))
		}
		s.metrics.request(g)
	}
	level := slog.LevelInfo
	if sw.code >= 400 {
		attrs = append(attrs, slog.String("error", sw.errReason))
		if sw.code >= 500 {
			level = slog.LevelError
		} else {
			level = slog.LevelWarn
		}
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}
