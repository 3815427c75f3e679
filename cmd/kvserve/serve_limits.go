package main

import (
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/kvserve/kvserve/server"
)

// serveLimits are the flags of kvserve serve that bound what clients may
// cost: time on a connection, connections at once, request sizes, and
// what anonymous clients may learn from each other.
type serveLimits struct {
	headerTimeout, bodyTimeout, writeTimeout, idleTimeout time.Duration
	maxConns                                              int
	maxBody                                               string
	maxBodyBytes                                          int64
	embedInputs, embedTokens                              int
	anonymousCache                                        string
	specialInMessages                                     bool
}

// flags defines the flags on fs.
func (o *serveLimits) flags(fs *flag.FlagSet) {
	fs.DurationVar(&o.headerTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send a request's headers")
	fs.DurationVar(&o.bodyTimeout, "read-timeout", 20*time.Second, "how long a client may take to send a request's body (then 408 and the connection is closed)")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 30*time.Second, "how long writing a whole response, or one event of a stream, may take before the connection is closed")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 20*time.Second, "how long a kept-alive connection may wait for its next request")
	fs.IntVar(&o.maxConns, "max-connections", 512, "most client connections open at once; more wait to be accepted (0: no limit)")
	fs.StringVar(&o.maxBody, "max-body", "auto", "largest request body, e.g. 4MiB; auto: room for the longest prompt the model takes (its context × the tokenizer's longest token, escaped as JSON) plus 1 MiB, at most 16 MiB")
	fs.IntVar(&o.embedInputs, "embed-max-inputs", 256, "most inputs in one embeddings request")
	fs.IntVar(&o.embedTokens, "embed-max-tokens", 0, "most tokens of all inputs of one embeddings request together (0: 4 × the context)")
	fs.StringVar(&o.anonymousCache, "anonymous-cache", server.AnonymousClient, "prefix-cache reuse for requests with neither an API key nor a cache_salt: client (only among requests from the same address), none, or shared (clients can then probe each other's prompts through cached_tokens and timing)")
	fs.BoolVar(&o.specialInMessages, "special-in-messages", false, "read special tokens written in chat message contents (<|im_start|>) as control tokens; by default they are plain text, so a user cannot forge a system or assistant turn")
}

// check validates the flags once parsed.
func (o *serveLimits) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--read-header-timeout", o.headerTimeout}, {"--read-timeout", o.bodyTimeout}, {"--write-timeout", o.writeTimeout}, {"--idle-timeout", o.idleTimeout}} {
		if d.v < 0 {
			return usageError{fmt.Sprintf("%s %v must be ≥ 0 (0: none)", d.name, d.v)}
		}
	}
	switch {
	case o.maxConns < 0:
		return usageError{"--max-connections must be ≥ 0"}
	case o.embedInputs < 1:
		return usageError{"--embed-max-inputs must be ≥ 1"}
	case o.embedTokens < 0:
		return usageError{"--embed-max-tokens must be ≥ 0"}
	}
	if o.maxBody != "auto" {
		n, err := parseBytes(o.maxBody)
		if err != nil || n < 1024 {
			return usageError{fmt.Sprintf("--max-body %q: want auto or a size of at least 1KiB", o.maxBody)}
		}
		o.maxBodyBytes = n
	}
	if _, err := server.ParseAnonymousCache(o.anonymousCache); err != nil {
		return usageError{"--anonymous-cache " + err.Error()}
	}
	return nil
}

// apply sets the API's bounds.
func (o *serveLimits) apply(c server.Config) server.Config {
	c.MaxBodyBytes = o.maxBodyBytes
	c.BodyTimeout, c.WriteTimeout = orNone(o.bodyTimeout), orNone(o.writeTimeout)
	c.EmbedMaxInputs, c.EmbedMaxTokens = o.embedInputs, o.embedTokens
	c.AnonymousCache = o.anonymousCache
	c.SpecialInMessages = o.specialInMessages
	return c
}

// server sets the HTTP server's timeouts. Its ReadTimeout and
// WriteTimeout stay off: they would also cut a response streamed for
// longer; the API bounds body reads and each write itself.
func (o *serveLimits) server(hs *http.Server) {
	hs.ReadHeaderTimeout = o.headerTimeout
	hs.IdleTimeout = o.idleTimeout
	if o.idleTimeout == 0 {
		hs.IdleTimeout = -1 // http.Server reads 0 as ReadTimeout
	}
}

// orNone maps a flag's 0 (none) to the API's "none" (< 0).
func orNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
