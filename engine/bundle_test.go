package engine

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

const tinyDir = "../models/tinychat"

// folderWithTemplate copies the bundled tinychat into a temporary folder
// whose chat template is template ("" for none: a base model), written as
// chat_template.jinja; tokenizer_config.json loses any chat_template key.
func folderWithTemplate(t *testing.T, template string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(tinyDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		switch e.Name() {
		case "chat_template.jinja":
			continue
		case "tokenizer_config.json":
			var cfg map[string]any
			if err := json.Unmarshal(data, &cfg); err != nil {
				t.Fatal(err)
			}
			delete(cfg, "chat_template")
			if data, err = json.Marshal(cfg); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if template != "" {
		if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte(template), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestOpenWithout opens folders that lack a chat template or a tokenizer,
// or carry a broken template, with and without --chat-template's option.
func TestOpenWithout(t *testing.T) {
	pool := compute.NewPool(0)
	defer pool.Close()
	msgs := []chat.Message{{Role: "user", Content: "What is the special magic number?"}}
	want, err := tinychat(t).ChatPrompt(msgs)
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(tinyDir, "chat_template.jinja")
	base := folderWithTemplate(t, "")
	broken := folderWithTemplate(t, "{% if %}")
	empty := filepath.Join(t.TempDir(), "empty.jinja")
	if err := os.WriteFile(empty, []byte(" \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const weightsOnly = "../model/testdata/archs/qwen2"
	for _, tc := range []struct {
		name, dir, template string
		openErr             string // Open fails with this
		chatErr             error  // ChatPrompt fails wrapping this
	}{
		{"base model", base, "", "", ErrNoChatTemplate},
		{"base model with a template", base, good, "", nil},
		{"broken template", broken, "", "--chat-template FILE", nil},
		{"broken template replaced", broken, good, "", nil},
		{"missing template file", base, filepath.Join(base, "nosuch.jinja"), "nosuch.jinja", nil},
		{"empty template file", base, empty, "is empty", nil},
		{"weights only", weightsOnly, "", "", ErrNoTokenizer},
		{"weights only with a template", weightsOnly, good, "no tokenizer.json", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := OpenWith(tc.dir, pool, Options{ChatTemplateFile: tc.template})
			if tc.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.openErr) {
					t.Fatalf("open: %v, want an error mentioning %q", err, tc.openErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			got, err := b.ChatPrompt(msgs)
			if tc.chatErr != nil {
				if !errors.Is(err, tc.chatErr) || !strings.Contains(err.Error(), filepath.Base(tc.dir)) {
					t.Fatalf("chat: %v, want %v naming the model", err, tc.chatErr)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("chat prompt %q, %v; want %q", got, err, want)
			}
		})
	}
}

// TestWeightsOnlyBundle generates from ids without a tokenizer, and checks
// that the scheduler, whose events carry text, says why it cannot.
func TestWeightsOnlyBundle(t *testing.T) {
	pool := compute.NewPool(0)
	defer pool.Close()
	b, err := Open("../model/testdata/archs/qwen2", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Tokenizer != nil || b.Chat != nil || len(b.Stop) != 1 || b.Stop[0] != 2 {
		t.Fatalf("tokenizer %v, chat %v, stop %v", b.Tokenizer, b.Chat, b.Stop)
	}
	cache := b.Net.NewCache()
	defer cache.Release()
	res, err := b.Generate(context.Background(), cache, Request{Prompt: []int{5, 6, 7}, MaxTokens: 3, IgnoreEOS: true}, nil)
	if err != nil || len(res.Output) != 3 {
		t.Fatalf("generate: %v %v", res, err)
	}
	s := NewScheduler(b, SchedulerConfig{})
	defer s.Close()
	if _, err := s.Submit(context.Background(), Job{Prompt: []int{5, 6, 7}, MaxTokens: 2}); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("submit: %v, want ErrNoTokenizer", err)
	}
	if err := b.NeedTokenizer("--prompt"); !errors.Is(err, ErrNoTokenizer) || !strings.Contains(err.Error(), "--prompt-ids") {
		t.Errorf("NeedTokenizer: %v", err)
	}
}

// TestChatTemplateOverride replaces a model's own template, in a folder
// and in a GGUF file.
func TestChatTemplateOverride(t *testing.T) {
	pool := compute.NewPool(0)
	defer pool.Close()
	file := filepath.Join(t.TempDir(), "plain.jinja")
	if err := os.WriteFile(file, []byte("{% for m in messages %}<<{{ m.role }}: {{ m.content }}>>{% endfor %}{% if add_generation_prompt %}<<assistant: {% endif %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{tinyDir, "../../shared/models/gguf/tinychat-q8_0.gguf"} {
		if _, err := os.Stat(path); err != nil {
			t.Logf("skipping %s: %v", path, err)
			continue
		}
		b, err := OpenWith(path, pool, Options{ChatTemplateFile: file})
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.ChatPrompt([]chat.Message{{Role: "user", Content: "hi"}})
		b.Close()
		if want := "<<user: hi>><<assistant: "; err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", path, got, err, want)
		}
	}
}
