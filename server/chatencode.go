package server

import (
	"github.com/kvserve/kvserve/tokenizer"
)

// encodeChat renders messages (and tools) with the chat template and
// tokenizes the prompt, stopping once it passes limit tokens. Special
// tokens that the template writes (<|im_start|>, <|im_end|>) are control
// tokens; the same strings written in a message's content are plain text,
// unless Config.SpecialInMessages: otherwise a user could close their own
// turn and open a system or assistant turn of their making.
func (s *Server) encodeChat(msgs []chatMessage, tools *toolSetup, limit int) ([]int, *apiError) {
	if s.b.Tokenizer == nil || s.b.Chat == nil { // a base model or weights only
		_, err := s.b.ChatPrompt(nil)
		return nil, s.chatPromptError(err)
	}
	// Contents longer together than the context can hold are refused
	// before the template copies them around.
	if per := s.b.Tokenizer.MaxTokenBytes(); per > 0 {
		total := 0
		for _, m := range msgs {
			total += len(m.Content)
		}
		if total > limit*per {
			return nil, invalid("messages", "context_length_exceeded",
				"This model's maximum context length is %d tokens. However, your messages hold %d bytes of text, more than %d tokens can (at most %d bytes a token); shorten them.", s.b.ContextLength(), total, limit, per)
		}
	}
	text, e := s.renderChat(msgs, tools)
	if e != nil {
		return nil, e
	}
	var opts tokenizer.EncodeOptions
	if !s.cfg.SpecialInMessages {
		keep, e := s.templateSpecials(msgs, tools, text)
		if e != nil {
			return nil, e
		}
		opts.KeepSpecial = keep
	}
	return s.encodePrompt(text, "messages", limit, opts)
}

// templateSpecials tells the special tokens of the rendered text that
// the template wrote from those that came from message contents. When no
// content holds special-token text it returns nil: every special token is
// the template's. Otherwise it renders the conversation a second time,
// each special token in the contents blanked to as many NUL bytes, and
// keeps a special token of text only where the second rendering has it
// too. A template that changes its output's length for the blanked text
// (it looks into the content) makes the request a 400 rather than a guess.
func (s *Server) templateSpecials(msgs []chatMessage, tools *toolSetup, text string) (func(start, end int) bool, *apiError) {
	tok := s.b.Tokenizer
	var blanked []chatMessage
	first := ""
	for i, m := range msgs {
		spans := tok.SpecialSpans(string(m.Content))
		if len(spans) == 0 {
			continue
		}
		if blanked == nil {
			blanked = append([]chatMessage(nil), msgs...)
			first = string(m.Content[spans[0][0]:spans[0][1]])
		}
		b := []byte(m.Content)
		for _, sp := range spans {
			clear(b[sp[0]:sp[1]])
		}
		blanked[i].Content = chatContent(b)
	}
	if blanked == nil {
		return nil, nil
	}
	other, e := s.renderChat(blanked, tools)
	if e != nil || len(other) != len(text) {
		return nil, invalid("messages", "invalid_value", "a message contains special-token text (such as %q) that the chat template does not copy through unchanged, so it cannot be encoded as plain text; remove it, or start the server with --special-in-messages to let messages write control tokens", first)
	}
	return func(start, end int) bool { return text[start:end] == other[start:end] }, nil
}
