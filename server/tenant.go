package server

import (
	"fmt"
	"net"
	"net/http"
)

// Reuse of cached prefixes by requests that present neither an API key
// nor a cache_salt (Config.AnonymousCache). Prefix reuse is visible:
// usage.prompt_tokens_details.cached_tokens counts the reused tokens to
// the token, and a reused prompt answers sooner. Among clients that share
// a tenant, that is an oracle: a client guessing another's prompt learns
// from the count (or the time) how much of the guess was right, and can
// extend it token by token. As in vLLM's cache_salt design, the cure is
// that only requests that share a secret share a cache: the API key or
// the cache_salt is that secret. Anonymous requests have none, so by
// default they share only with their own client address (a client can
// only learn what it sent itself); "none" gives each anonymous request a
// cache of its own; "shared" restores one anonymous tenant for a trusted
// deployment (one user, or clients that trust each other).
const (
	AnonymousClient = "client" // reuse among requests from one client address
	AnonymousNone   = "none"   // no reuse at all
	AnonymousShared = "shared" // one tenant for every anonymous request
)

// ParseAnonymousCache checks a Config.AnonymousCache value.
func ParseAnonymousCache(s string) (string, error) {
	switch s {
	case AnonymousClient, AnonymousNone, AnonymousShared:
		return s, nil
	}
	return "", fmt.Errorf("%q: want client, none or shared", s)
}

// tenant sets the job's prefix-cache tenant: the API key and cache_salt
// as tenantSalt makes it, else what Config.AnonymousCache says.
func (s *Server) tenant(r *http.Request, g *generation) {
	salt := tenantSalt(r, g.cacheSalt)
	if salt == "" {
		switch s.cfg.AnonymousCache {
		case AnonymousNone:
			g.job.NoReuse = true
		case AnonymousClient:
			salt = "client:" + clientAddr(r)
		}
	}
	g.job.Salt = salt
}

// clientAddr returns the IP address a request came from (the peer, not a
// header a client could forge).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
