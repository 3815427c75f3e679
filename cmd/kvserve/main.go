// Command kvserve runs LLMs from Hugging Face model folders: generate text,
// measure accuracy and speed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand of kvserve.
type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "generate text from a prompt", cmdRun},
		{"chat", "chat with the model in the terminal (history, streaming, /reset, /press)", cmdChat},
		{"serve", "serve the model over an OpenAI-compatible HTTP API", cmdServe},
		{"bench", "measure accuracy (bench accuracy) or speed (bench perf)", cmdBench},
		{"inspect", "describe a model: a .gguf file or a model folder", cmdInspect},
		{"profile-heads", "find DuoAttention retrieval heads on passkey prompts", cmdProfileHeads},
		{"version", "print the version, commit, Go version and kernel set", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "kvserve — an LLM inference engine whose KV cache is the product.")
	fmt.Fprintln(w, "\nUsage: kvserve <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nBenchmarks (kvserve bench <name>):")
	for _, b := range [][2]string{
		{"accuracy", "long-context accuracy on a JSONL task set, with --press, --sweep"},
		{"perf", "prefill and decode speed, TTFT, memory, the machine's peaks"},
		{"serve", "load a running OpenAI-compatible server: TTFT, ITL, throughput"},
		{"compare", "line an accuracy result up with transformers' and kvpress's"},
		{"plot", "draw accuracy against KV bytes (PNG)"},
		{"summary", "one line per method family of an accuracy result"},
	} {
		fmt.Fprintf(w, "  %-14s %s\n", b[0], b[1])
	}
	fmt.Fprintln(w, "\nRun 'kvserve <command> --help' for a command's flags. Without --model,")
	fmt.Fprintln(w, "commands use the bundled tinychat: a 14 M-parameter model trained on Go")
	fmt.Fprintln(w, "source and long-context retrieval tasks (it finds a needle in 4 000 tokens;")
	fmt.Fprintln(w, "it is not a general chat model). --model takes a Hugging Face model folder")
	fmt.Fprintln(w, "or a .gguf file.")
}

// usageError marks errors caused by bad command-line arguments (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, version())
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		}
		fmt.Fprintf(stderr, "kvserve %s: %s\n", c.name, oneLine(err.Error()))
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stderr, "kvserve: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ") }

// newFlags returns a flag set whose --help prints a description and the
// flags, and whose parse errors come back as usage errors.
func newFlags(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kvserve "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kvserve %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	return nil
}
