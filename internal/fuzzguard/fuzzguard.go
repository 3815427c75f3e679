// Package fuzzguard bounds the time of one fuzz input: a parser that takes
// seconds on a small input is a denial of service waiting for its file,
// and the fuzzer, which only reports panics and failures, would otherwise
// just stall on it.
package fuzzguard

import (
	"testing"
	"time"
)

// Limit is the most one input may take. It is generous — fuzz inputs are
// small, and a loaded machine slows everything — so that passing it means
// work out of proportion to the input.
const Limit = 2 * time.Second

// Start returns a function, to be deferred, that fails t if the input
// took longer than Limit, naming its size.
func Start(t testing.TB, size int) func() {
	t0 := time.Now()
	return func() {
		if d := time.Since(t0); d > Limit {
			t.Fatalf("a %d-byte input took %v, more than %v: bound the work it causes", size, d.Round(time.Millisecond), Limit)
		}
	}
}
