package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// keyring holds the API keys a server accepts, as SHA-256 digests: a
// presented key is hashed and compared with every digest in constant time,
// so neither a key's bytes nor its length show in how long the check takes,
// and the keys themselves are not kept.
type keyring struct {
	digests [][sha256.Size]byte
}

// newKeyring returns the keyring of keys, nil when there are none (the
// server is then open to anyone who reaches it).
func newKeyring(keys []string) *keyring {
	if len(keys) == 0 {
		return nil
	}
	k := &keyring{}
	for _, key := range keys {
		k.digests = append(k.digests, sha256.Sum256([]byte(key)))
	}
	return k
}

// accepts reports whether key is one of the ring's, looking at every
// digest whatever the outcome.
func (k *keyring) accepts(key string) bool {
	d := sha256.Sum256([]byte(key))
	match := 0
	for i := range k.digests {
		match |= subtle.ConstantTimeCompare(d[:], k.digests[i][:])
	}
	return match == 1
}

// bearerToken returns the token of an Authorization header of the Bearer
// scheme (the scheme's name in any case), and whether there was one.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// guarded reports whether path needs an API key: every path but /health,
// which load balancers probe, and /metrics unless Config.MetricsAuth.
func (s *Server) guarded(path string) bool {
	switch path {
	case "/health":
		return false
	case "/metrics":
		return s.cfg.MetricsAuth
	}
	return true
}

// authorize checks a request's API key when the server has keys (see
// Config.APIKeys), returning the 401 to answer when it fails. The error
// never repeats the key sent.
func (s *Server) authorize(r *http.Request) *apiError {
	if s.keys == nil || !s.guarded(r.URL.Path) {
		return nil
	}
	key, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		return &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: strp("invalid_api_key"),
			Message: "No API key given. This server needs one, sent as the HTTP header `Authorization: Bearer YOUR_KEY`."}
	}
	if !s.keys.accepts(key) {
		return &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: strp("invalid_api_key"),
			Message: "Incorrect API key given in the Authorization header; it is not one of the keys this server was started with (--api-key)."}
	}
	return nil
}

// writeUnauthorized answers a request that failed authorize, with the
// WWW-Authenticate challenge HTTP asks of a 401.
func writeUnauthorized(w http.ResponseWriter, r *http.Request, e *apiError) {
	challenge := `Bearer realm="kvserve"`
	if _, sent := bearerToken(r.Header.Get("Authorization")); sent {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, e)
}
