package engine

import (
	"encoding/json"
	"fmt"
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

// Open loads a model folder, or a GGUF file (a path ending in .gguf). An
// empty path loads the bundled tinychat.
func Open(path string, pool *compute.Pool) (*Bundle, error) {
	if strings.HasSuffix(strings.ToLower(path), ".gguf") {
		return openGGUF(path, pool)
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
	if err := b.loadText(src); err != nil {
		net.Close()
		return nil, err
	}
	return b, nil
}

// openGGUF loads a GGUF file: the network, the tokenizer and chat template
// of its metadata (Chat stays nil without tokenizer.chat_template), and
// the EOS (and EOT) token as stop tokens.
func openGGUF(path string, pool *compute.Pool) (*Bundle, error) {
	net, f, err := model.LoadGGUF(path, pool)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), Net: net, Stop: net.Config.EOS}
	md, err := f.TokenizerMetadata()
	if err == nil {
		b.Tokenizer, err = tokenizer.FromGGUF(md)
	}
	if err == nil && md.ChatTemplate != "" {
		b.Chat, err = chat.Parse(md.ChatTemplate, chat.Specials{BOS: b.Tokenizer.TokenString(md.BOS), EOS: b.Tokenizer.TokenString(md.EOS)})
	}
	if err != nil {
		net.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

func (b *Bundle) loadText(src model.Source) error {
	data, err := src.ReadFile("tokenizer.json")
	if err != nil {
		return fmt.Errorf("%s: %w", src.Name(), err)
	}
	if b.Tokenizer, err = tokenizer.Parse(data); err != nil {
		return fmt.Errorf("%s: tokenizer.json: %w", src.Name(), err)
	}
	tokCfg, _ := src.ReadFile("tokenizer_config.json")
	tmpl, _ := src.ReadFile("chat_template.jinja")
	if tokCfg != nil || tmpl != nil {
		b.Chat, err = chat.FromConfig(tokCfg, tmpl)
		if err != nil {
			return fmt.Errorf("%s: chat template: %w", src.Name(), err)
		}
	}
	b.Stop = b.Net.Config.EOS
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
func (b *Bundle) ChatPrompt(msgs []chat.Message) (string, error) {
	if b.Chat == nil {
		return "", fmt.Errorf("model %s has no chat template (chat_template.jinja or tokenizer_config.json's chat_template in a folder, tokenizer.chat_template in a GGUF file); use --prompt with the raw text instead", b.Name)
	}
	return b.Chat.Render(msgs, true)
}

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
