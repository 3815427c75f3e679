package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/models"
	"github.com/kvserve/kvserve/tokenizer"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

// Bundle is everything needed to turn text into text with one model: the
// network, its tokenizer, its chat template and its stop tokens.
type Bundle struct {
	Name      string
	Net       *model.Model
	Tokenizer *tokenizer.Tokenizer
	Chat      *chat.Template // nil when the model ships no chat template
	// Stop holds the token ids that end generation (generation_config.json,
	// else config.json's eos_token_id).
	Stop []int
}

// Options changes how OpenWith loads a model. The zero value loads the
// model as its files describe it.
type Options struct {
	// ChatTemplateFile names a Jinja chat template that replaces the
	// model's own, or supplies one to a base model that ships none.
	ChatTemplateFile string
	// ContextLength, when positive, caps the context below the model's own
	// (memory and the longest prompt accepted follow it); it cannot
	// exceed the model's.
	ContextLength int
	// Numerics is how matrix products treat activations: "exact", "fast"
	// (see compute.Numerics) or "auto" and "" (the default), which is fast
	// for GGUF files, computed as llama.cpp computes them, and exact for
	// Hugging Face folders, computed as transformers in float32 does.
	Numerics string
}

// resolveNumerics returns the numerics opt asks for a model at path.
func resolveNumerics(opt Options, path string) (compute.Numerics, error) {
	switch opt.Numerics {
	case "", "auto":
		if isGGUF(path) {
			return compute.Fast, nil
		}
		return compute.Exact, nil
	}
	n, err := compute.ParseNumerics(opt.Numerics)
	if err != nil {
		return n, fmt.Errorf("%w, or auto", err)
	}
	return n, nil
}

// isGGUF reports whether path names a GGUF file.
func isGGUF(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".gguf") }

// ErrNoChatTemplate is what ChatPrompt's error wraps when the model has no
// chat template: a base model, which runs on raw text but cannot chat.
var ErrNoChatTemplate = errors.New("the model has no chat template")

// ErrNoTokenizer is what the errors of NeedTokenizer and ChatPrompt wrap
// when the model folder has no tokenizer.json: such a model runs on token
// ids only.
var ErrNoTokenizer = errors.New("the model has no tokenizer")

// Open loads a model folder, or a GGUF file (a path ending in .gguf). An
// empty path loads the bundled tinychat.
func Open(path string, pool *compute.Pool) (*Bundle, error) {
	return OpenWith(path, pool, Options{})
}

// OpenWith is Open with options. A folder may lack a chat template (a base
// model: Chat stays nil) or tokenizer.json (weights and config only, as
// save_pretrained of a model alone writes them: Tokenizer stays nil, and
// the model runs on token ids).
func OpenWith(path string, pool *compute.Pool, opt Options) (*Bundle, error) {
	if opt.ContextLength < 0 {
		return nil, fmt.Errorf("context length %d: want a positive number of tokens", opt.ContextLength)
	}
	numerics, err := resolveNumerics(opt, path)
	if err != nil {
		return nil, err
	}
	b, err := openWith(path, pool, opt)
	if err != nil {
		return nil, err
	}
	b.Net.SetNumerics(numerics)
	if opt.ContextLength == 0 {
		return b, nil
	}
	if own := b.ContextLength(); opt.ContextLength > own {
		b.Close()
		return nil, fmt.Errorf("context length %d exceeds model %s's own %d tokens", opt.ContextLength, b.Name, own)
	}
	b.Net.Config.MaxPositions = opt.ContextLength
	return b, nil
}

func openWith(path string, pool *compute.Pool, opt Options) (*Bundle, error) {
	if isGGUF(path) {
		return openGGUF(path, pool, opt)
	}
	src := model.Source{Dir: path}
	name := filepath.Base(filepath.Clean(path))
	if path == "" {
		if models.TinyChat() == nil {
			return nil, fmt.Errorf("this kvserve was built without the bundled model (-tags nobundle): pass --model DIR")
		}
		src = model.Source{FS: models.TinyChat()}
		name = models.DefaultName
	} else if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("model folder: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("model %s: want a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)", path)
	}
	net, err := model.Load(src, pool)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Name: name, Net: net}
	if err := b.loadText(src, opt); err != nil {
		net.Close()
		return nil, err
	}
	return b, nil
}

// openGGUF loads a GGUF file: the network, the tokenizer and chat template
// of its metadata (Chat stays nil without tokenizer.chat_template), and
// the EOS (and EOT) token as stop tokens.
func openGGUF(path string, pool *compute.Pool, opt Options) (*Bundle, error) {
	net, f, err := model.LoadGGUF(path, pool)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), Net: net, Stop: net.Config.EOS}
	md, err := f.TokenizerMetadata()
	if err == nil {
		b.Tokenizer, err = tokenizer.FromGGUF(md)
	}
	source := md.ChatTemplate
	if err == nil && opt.ChatTemplateFile != "" {
		source, err = readTemplate(opt.ChatTemplateFile)
	}
	if err == nil && source != "" {
		b.Chat, err = chat.Parse(source, chat.Specials{BOS: b.Tokenizer.TokenString(md.BOS), EOS: b.Tokenizer.TokenString(md.EOS)})
	}
	if err != nil {
		net.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// readTemplate reads a chat template file given in Options.
func readTemplate(name string) (string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("chat template file: %w", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return "", fmt.Errorf("chat template file %s is empty", name)
	}
	return string(data), nil
}

// loadText reads what turns text into ids and back: tokenizer.json, and
// the chat template (Options' file, else chat_template.jinja, else
// tokenizer_config.json's chat_template). Either may be missing.
func (b *Bundle) loadText(src model.Source, opt Options) error {
	data, err := src.ReadFile("tokenizer.json")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if opt.ChatTemplateFile != "" {
			return fmt.Errorf("%s has no tokenizer.json, so a chat template (%s) cannot be used: add the tokenizer files, or run on token ids without a template", src.Name(), opt.ChatTemplateFile)
		}
		b.Stop = b.Net.Config.EOS
		return b.loadStop(src)
	case err != nil:
		return fmt.Errorf("%s: %w", src.Name(), err)
	}
	if b.Tokenizer, err = tokenizer.Parse(data); err != nil {
		return fmt.Errorf("%s: tokenizer.json: %w", src.Name(), err)
	}
	tokCfg, _ := src.ReadFile("tokenizer_config.json")
	tmpl, _ := src.ReadFile("chat_template.jinja")
	if opt.ChatTemplateFile != "" {
		source, err := readTemplate(opt.ChatTemplateFile)
		if err != nil {
			return err
		}
		tmpl = []byte(source)
	}
	if tokCfg != nil || tmpl != nil {
		b.Chat, err = chat.FromConfig(tokCfg, tmpl)
		switch {
		case errors.Is(err, chat.ErrNoTemplate): // a base model
			b.Chat = nil
		case err != nil && opt.ChatTemplateFile != "":
			return fmt.Errorf("%s: %w", opt.ChatTemplateFile, err)
		case err != nil:
			return fmt.Errorf("%s: chat template: %w (give a working one with --chat-template FILE)", src.Name(), err)
		}
	}
	b.Stop = b.Net.Config.EOS
	return b.loadStop(src)
}

// loadStop reads the stop tokens of generation_config.json, if any.
func (b *Bundle) loadStop(src model.Source) error {
	if gen, err := src.ReadFile("generation_config.json"); err == nil {
		var g struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(gen, &g); err != nil {
			return fmt.Errorf("%s: generation_config.json: %w", src.Name(), err)
		}
		if ids := parseIDs(g.EOS); len(ids) > 0 {
			b.Stop = ids
		}
	}
	return nil
}

func parseIDs(m json.RawMessage) []int {
	var one int
	if json.Unmarshal(m, &one) == nil {
		return []int{one}
	}
	var many []int
	json.Unmarshal(m, &many)
	return many
}

// Close releases the model's mapped files.
func (b *Bundle) Close() error { return b.Net.Close() }

// ChatPrompt renders messages with the chat template and the generation
// prompt, as text ready for Encode.
// Its errors wrap ErrNoTokenizer or ErrNoChatTemplate when the model lacks
// what chat needs.
func (b *Bundle) ChatPrompt(msgs []chat.Message) (string, error) {
	if err := b.NeedTokenizer("a chat"); err != nil {
		return "", err
	}
	if b.Chat == nil {
		return "", &lackError{ErrNoChatTemplate, fmt.Sprintf("model %s has no chat template (a base model: neither chat_template.jinja nor a chat_template in tokenizer_config.json; in a GGUF file, no tokenizer.chat_template), so it cannot chat: give it raw text (--prompt, /v1/completions), or supply a Jinja chat template with --chat-template FILE", b.Name)}
	}
	return b.Chat.Render(msgs, true)
}

// NeedTokenizer returns nil when the model has a tokenizer, and otherwise
// an error wrapping ErrNoTokenizer that says what needed it (what: e.g.
// "--prompt") and what to do instead.
func (b *Bundle) NeedTokenizer(what string) error {
	if b.Tokenizer != nil {
		return nil
	}
	return &lackError{ErrNoTokenizer, fmt.Sprintf("model %s has no tokenizer.json (a folder of weights and config only), so it cannot read or write text, which %s needs: give token ids and take ids back (kvserve run --prompt-ids 1,2,3 --json), or add the model's tokenizer.json to the folder", b.Name, what)}
}

// lackError is an error about something the model lacks; it wraps the
// sentinel naming what.
type lackError struct {
	kind error
	msg  string
}

func (e *lackError) Error() string { return e.msg }
func (e *lackError) Unwrap() error { return e.kind }

// CheckText reports text that is not valid UTF-8, naming the first bad
// byte, so that a prompt is never silently altered.
func CheckText(what, text string) error {
	for i, r := range text {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(text[i:]); size == 1 {
				return fmt.Errorf("%s is not valid UTF-8: byte 0x%02x at offset %d", what, text[i], i)
			}
		}
	}
	return nil
}

// ContextLength returns the most positions the model takes.
func (b *Bundle) ContextLength() int { return b.Net.Config.MaxPositions }
