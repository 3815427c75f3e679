package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"unicode"

	"github.com/kvserve/kvserve/engine"
)

// apiKeyEnv is the environment variable that may hold one API key.
const apiKeyEnv = "KVSERVE_API_KEY"

// apiKeyFlags are serve's access-control flags.
type apiKeyFlags struct {
	keys        []string // --api-key, in order
	files       []string // --api-key-file
	metricsAuth *bool
}

func addAPIKeyFlags(fs *flag.FlagSet) *apiKeyFlags {
	f := &apiKeyFlags{}
	fs.Func("api-key", "require this key as \"Authorization: Bearer KEY\" on every route but /health and /metrics; repeat for several keys (also: --api-key-file, $"+apiKeyEnv+"). The key also names the client's prefix-cache tenant", func(s string) error {
		f.keys = append(f.keys, s) // checked in resolve: the flag package would quote a bad value
		return nil
	})
	fs.Func("api-key-file", "read API keys from FILE, one a line (blank lines and lines starting with # are skipped); repeatable", func(s string) error {
		f.files = append(f.files, s)
		return nil
	})
	f.metricsAuth = fs.Bool("metrics-auth", false, "put /metrics behind the API keys too (/health stays open)")
	return f
}

// resolve gathers the keys of the flags, the files and the environment
// (getenv), without duplicates. Errors never quote a key.
func (f *apiKeyFlags) resolve(getenv func(string) string) ([]string, error) {
	var keys []string
	for i, s := range f.keys {
		key, err := checkKey(s)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--api-key (number %d): %v", i+1, err)}
		}
		keys = append(keys, key)
	}
	for _, name := range f.files {
		fromFile, err := readKeyFile(name)
		if err != nil {
			return nil, err
		}
		keys = append(keys, fromFile...)
	}
	if v := getenv(apiKeyEnv); v != "" {
		key, err := checkKey(v)
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", apiKeyEnv, err)
		}
		keys = append(keys, key)
	}
	seen := map[string]bool{}
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if *f.metricsAuth && len(out) == 0 {
		return nil, usageError{"--metrics-auth needs an API key (--api-key, --api-key-file or $" + apiKeyEnv + ")"}
	}
	return out, nil
}

// readKeyFile reads one key a line.
func readKeyFile(name string) ([]string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, usageError{"--api-key-file: " + err.Error()}
	}
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		key, err := checkKey(s)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--api-key-file %s: line %d: %v", name, line, err)}
		}
		keys = append(keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, usageError{fmt.Sprintf("--api-key-file %s: %v", name, err)}
	}
	if len(keys) == 0 {
		return nil, usageError{fmt.Sprintf("--api-key-file %s holds no keys (one a line)", name)}
	}
	return keys, nil
}

// checkKey trims a key and refuses one that no client could send in an
// Authorization header.
func checkKey(s string) (string, error) {
	key := strings.TrimSpace(s)
	if key == "" {
		return "", fmt.Errorf("empty API key")
	}
	for _, r := range key {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r > unicode.MaxASCII {
			return "", fmt.Errorf("the API key holds white space, a control or a non-ASCII character, which an Authorization header cannot carry")
		}
	}
	return key, nil
}

// warnOpen logs what a user of the server should know at start: that it
// answers anyone when it listens beyond this machine without a key, and
// what a model without a chat template or tokenizer cannot do.
func warnOpen(log *slog.Logger, b *engine.Bundle, o serveOptions) {
	if len(o.apiKeys) == 0 && !isLoopback(o.host) {
		log.Warn("no API key: anyone who reaches this address may use the server; start it with --api-key KEY (or $" + apiKeyEnv + ")")
	}
	switch {
	case b.Tokenizer == nil:
		log.Warn("the model has no tokenizer.json: the text endpoints answer 400; only /v1/embeddings with token-id input works")
	case b.Chat == nil:
		log.Warn("the model has no chat template: /v1/chat/completions answers 400; give one with --chat-template FILE")
	}
}

// isLoopback reports whether host only accepts connections from this
// machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
