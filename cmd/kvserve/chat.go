package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/tokenizer"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

func cmdChat(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chat", "[--model DIR] [--system TEXT] [--max-tokens N] [--temperature T] [flags]",
		"An interactive chat in the terminal: each line you type is a user turn,\n"+
			"the answer streams back, and the conversation's KV cache is kept between\n"+
			"turns, so only the new tokens are computed. Commands:\n"+
			"  /reset              forget the conversation\n"+
			"  /press NAME [RATIO] compress each turn's prompt KV with a press (none: off)\n"+
			"  /help               list the commands\n"+
			"  /exit               leave (so does end of input, Ctrl-D)", stderr)
	mf := addModelFlags(fs)
	system := fs.String("system", "", "system prompt (default: the template's own, if any)")
	maxTokens := fs.Int("max-tokens", 256, "most new tokens per answer")
	temperature := fs.Float64("temperature", 0, "sampling temperature; 0 is greedy")
	seed := fs.Uint64("seed", 0, "random seed for sampling")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sampling := engine.Sampling{Temperature: *temperature, TopP: 1, Seed: *seed}
	if err := sampling.Validate(); err != nil {
		return usageError{err.Error()}
	}
	b, _, closeAll, err := mf.open()
	if err != nil {
		return err
	}
	defer closeAll()
	if b.Chat == nil {
		return fmt.Errorf("model %s has no chat template: chat needs one (run with --prompt instead)", b.Name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	interactive := false
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		interactive = true
		fmt.Fprintf(stderr, "chatting with %s (%d tokens of context); /help lists the commands\n", b.Name, b.ContextLength())
	}
	c := &chatSession{b: b, system: *system, req: engine.Request{MaxTokens: *maxTokens, Sampling: sampling}, out: stdout, info: stderr, prompt: interactive}
	defer c.reset()
	return c.loop(ctx, os.Stdin)
}

// chatSession is one terminal conversation and the KV cache it keeps.
type chatSession struct {
	b      *engine.Bundle
	system string
	req    engine.Request
	press  *press.Press
	out    io.Writer // answers
	info   io.Writer // prompts and notes
	prompt bool      // print a prompt before each line

	msgs  []chat.Message
	cache *kvcache.Seq
	held  []int // the tokens cache holds
}

// loop reads lines until end of input or /exit.
func (c *chatSession) loop(ctx context.Context, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for {
		if c.prompt {
			fmt.Fprint(c.info, "> ")
		}
		if !sc.Scan() {
			return sc.Err()
		}
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case isChatCommand(line):
			if done, err := c.command(line); done || err != nil {
				return err
			}
		default:
			if err := c.turn(ctx, line); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				var pe *engine.PromptError
				if errors.As(err, &pe) {
					fmt.Fprintf(c.info, "%v (/reset starts over)\n", err)
					c.msgs = c.msgs[:len(c.msgs)-1]
					continue
				}
				return err
			}
		}
	}
}

// command runs one slash command; done asks to leave.
func (c *chatSession) command(line string) (done bool, err error) {
	f := strings.Fields(line)
	switch f[0] {
	case "/exit", "/quit":
		return true, nil
	case "/reset":
		c.reset()
		c.msgs = nil
		fmt.Fprintln(c.info, "conversation reset")
	case "/press":
		if len(f) < 2 || len(f) > 3 {
			fmt.Fprintln(c.info, "usage: /press NAME [RATIO]   (e.g. /press keydiff 0.5; /press none)")
			return false, nil
		}
		if f[1] == "none" {
			c.press = nil
			fmt.Fprintln(c.info, "press off")
			return false, nil
		}
		ratio := 0.5
		if len(f) == 3 {
			if ratio, err = strconv.ParseFloat(f[2], 64); err != nil {
				fmt.Fprintf(c.info, "%q is not a ratio\n", f[2])
				return false, nil
			}
		}
		p, err := press.Parse(f[1], ratio)
		if err != nil {
			fmt.Fprintln(c.info, err)
			return false, nil
		}
		c.press = p
		c.reset() // a pressed cache is rebuilt each turn
		fmt.Fprintf(c.info, "press %s at %g: each turn's prompt KV is compressed once computed\n", p.Name, p.Ratio)
	case "/help":
		fmt.Fprintln(c.info, "/reset  /press NAME [RATIO]  /press none  /exit")
	default:
		fmt.Fprintf(c.info, "unknown command %s (/help lists them)\n", f[0])
	}
	return false, nil
}

// reset drops the cache.
func (c *chatSession) reset() {
	if c.cache != nil {
		c.cache.Release()
		c.cache, c.held = nil, nil
	}
}

// turn answers one user line, streaming the answer.
func (c *chatSession) turn(ctx context.Context, text string) error {
	if err := engine.CheckText("input", text); err != nil {
		fmt.Fprintln(c.info, err)
		return nil
	}
	msgs := c.msgs
	if c.system != "" && len(msgs) == 0 {
		msgs = append(msgs, chat.Message{Role: "system", Content: c.system})
	}
	msgs = append(msgs, chat.Message{Role: "user", Content: text})
	c.msgs = msgs
	rendered, err := c.b.ChatPrompt(msgs)
	if err != nil {
		return err
	}
	ids := c.b.Tokenizer.Encode(rendered)
	if c.press != nil {
		c.reset() // a pressed cache lacks tokens: compress the whole prompt anew
	}
	if c.cache == nil {
		c.cache = c.b.Net.NewCache()
	}
	if c.press != nil {
		kv, err := compressPrompt(c.b, c.cache, ids, c.press)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.info, "[%s: prompt KV %d → %d bytes]\n", c.press.Name, kv.Full, kv.Pressed)
	} else {
		n := commonPrefix(c.held, ids)
		if err := c.cache.Truncate(n); err != nil {
			return err
		}
	}
	req := c.req
	req.Prompt = ids
	stream := tokenizer.NewStream(c.b.Tokenizer)
	res, err := c.b.Generate(ctx, c.cache, req, func(id int) error {
		_, err := io.WriteString(c.out, stream.Push(id))
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.out, stream.Flush())
	answer := c.b.Tokenizer.Decode(res.Output)
	c.msgs = append(c.msgs, chat.Message{Role: "assistant", Content: answer})
	c.held = append(append([]int(nil), ids...), res.Output...)[:c.cache.Next()]
	return nil
}

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// isChatCommand reports whether line is a slash command rather than text
// that starts with a slash (a "// comment" is text).
func isChatCommand(line string) bool {
	switch strings.Fields(line)[0] {
	case "/exit", "/quit", "/reset", "/press", "/help":
		return true
	}
	return false
}
