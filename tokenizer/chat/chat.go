// Package chat renders the Jinja chat templates that Hugging Face models
// ship (in chat_template.jinja or tokenizer_config.json) into the prompt
// text a model was trained on, the way transformers' apply_chat_template
// does.
//
// Templates run on github.com/ardanlabs/jinja, which applies HF's
// trim_blocks and lstrip_blocks settings. On top of it this package
// provides what HF provides: messages, add_generation_prompt, the special
// tokens, tools and documents (none), raise_exception and strftime_now (on
// a clock that tests can set).
package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ardanlabs/jinja"

	"github.com/kvserve/kvserve/tokenizer"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string // "system", "user", "assistant", ...
	Content string
}

// Specials holds the special tokens that a template may write. An empty
// string leaves the variable undefined, as HF does for a token that is not
// set.
type Specials struct {
	BOS string // bos_token
	EOS string // eos_token
}

// Template is a parsed chat template. It is safe for concurrent use.
type Template struct {
	tmpl     *jinja.Template
	specials Specials

	// Now is the clock that strftime_now reads; nil means time.Now.
	Now func() time.Time
	// MaxSteps and MaxOutput bound one rendering: loop iterations and
	// macro calls, and bytes written (bounds.go); DefaultMaxSteps and
	// DefaultMaxOutput if 0.
	MaxSteps, MaxOutput int
}

// Parse compiles a chat template. Syntax errors come back as errors that
// name the problem (and the line, where the engine knows it).
func Parse(source string, specials Specials) (t *Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("chat template: parse: engine panic: %v", r)
		}
	}()
	tmpl, err := jinja.Compile(instrumentBounds(instrumentMacros(source)))
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &Template{tmpl: tmpl, specials: specials}, nil
}

// FromConfig builds the template of a model folder. templateFile is the
// content of chat_template.jinja; when it is nil, tokenizer_config.json's
// chat_template is used: a string, or a list of {"name", "template"} of
// which the one named "default" is taken. The BOS and EOS tokens come from
// tokenizer_config.json's bos_token and eos_token (strings, null, or
// objects with a "content"). tokenizerConfigJSON may be nil when
// templateFile is given.
func FromConfig(tokenizerConfigJSON []byte, templateFile []byte) (*Template, error) {
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
	}
	if tokenizerConfigJSON != nil {
		if err := json.Unmarshal(tokenizerConfigJSON, &cfg); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	var specials Specials
	var err error
	if specials.BOS, _, err = tokenizer.ConfigToken(cfg.BOS); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: bos_token: %w", err)
	}
	if specials.EOS, _, err = tokenizer.ConfigToken(cfg.EOS); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: eos_token: %w", err)
	}
	if templateFile != nil {
		return Parse(string(templateFile), specials)
	}
	src, err := configTemplate(cfg.ChatTemplate)
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: chat_template: %w", err)
	}
	return Parse(src, specials)
}

// ErrNoTemplate is FromConfig's error for a folder that ships no chat
// template: a base model, which runs on raw text but cannot chat.
var ErrNoTemplate = errors.New("missing: the model has no chat template")

// configTemplate picks the template source out of chat_template.
func configTemplate(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", ErrNoTemplate
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", errors.New("want a string or a list of {name, template}")
	}
	var names []string
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
		names = append(names, n.Name)
	}
	return "", fmt.Errorf("no template named \"default\" among %q", names)
}

// Render renders a conversation. With addGenerationPrompt set, the prompt
// ends with what opens the assistant's reply.
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	return t.RenderVars(msgs, addGenerationPrompt, nil)
}

// RenderVars is Render with more template variables, such as tools or
// Llama's date_string. Values may be nil, bool, numbers, strings,
// []any, map[string]any (whose keys are sorted) or json.RawMessage (whose
// object keys keep their order).
func (t *Template) RenderVars(msgs []Message, addGenerationPrompt bool, vars map[string]any) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat template: render: engine panic: %v", r)
		}
	}()
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		list[i] = d
	}
	now := t.Now
	if now == nil {
		now = time.Now
	}
	data := map[string]jinja.Value{
		"messages":              jinja.NewList(list),
		"add_generation_prompt": jinja.NewBool(addGenerationPrompt),
		"tools":                 jinja.None(),
		"documents":             jinja.None(),
		"raise_exception":       jinja.NewCallable("raise_exception", raiseException),
		"strftime_now":          jinja.NewCallable("strftime_now", strftimeNow(now)),
	}
	bud := &budget{maxSteps: t.MaxSteps, maxBytes: t.MaxOutput}
	if bud.maxSteps <= 0 {
		bud.maxSteps = DefaultMaxSteps
	}
	if bud.maxBytes <= 0 {
		bud.maxBytes = DefaultMaxOutput
	}
	for k, v := range guards(bud) {
		data[k] = v
	}
	for k, v := range bud.callables() {
		data[k] = v
	}
	if t.specials.BOS != "" {
		data["bos_token"] = jinja.NewString(t.specials.BOS)
	}
	if t.specials.EOS != "" {
		data["eos_token"] = jinja.NewString(t.specials.EOS)
	}
	for k, v := range vars {
		val, err := toValue(v)
		if err != nil {
			return "", fmt.Errorf("chat template: variable %s: %w", k, err)
		}
		data[k] = val
	}
	out, err = t.tmpl.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("chat template: render: %w", err)
	}
	return out, nil
}

// raiseException is the template's raise_exception(message).
func raiseException(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	msg := "raise_exception called"
	if len(args) > 0 {
		if args[0].IsString() {
			msg = args[0].AsString()
		} else {
			msg = args[0].String()
		}
	}
	return jinja.Undefined(), &TemplateError{Message: msg}
}

// TemplateError is the error a template raises with raise_exception.
type TemplateError struct {
	Message string
}

// Error returns the message, marked as the template's own.
func (e *TemplateError) Error() string { return "raise_exception: " + e.Message }

// strftimeNow returns the template's strftime_now(format) on a clock.
func strftimeNow(now func() time.Time) func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
	return func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 || !args[0].IsString() {
			return jinja.Undefined(), errors.New("strftime_now: want a format string")
		}
		return jinja.NewString(strftime(args[0].AsString(), now())), nil
	}
}
