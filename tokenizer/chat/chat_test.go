package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ardanlabs/jinja"
)

const tinychatDir = "../../models/tinychat"

// The conversations the template tests render.
var (
	sys      = Message{"system", "You are terse."}
	user1    = Message{"user", "Hello!"}
	asst1    = Message{"assistant", "Hi. What do you need?"}
	user2    = Message{"user", "  The time, with spaces around.  \n"}
	oneTurn  = []Message{user1}
	withSys  = []Message{sys, user1}
	multi    = []Message{sys, user1, asst1, user2}
	noSysMul = []Message{user1, asst1, user2}
)

type renderCase struct {
	name string
	msgs []Message
	gen  bool
	vars map[string]any
	want string
}

func loadTemplate(t *testing.T, path string, sp Specials) *Template {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := Parse(string(src), sp)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Now = func() time.Time { return time.Date(2025, 2, 3, 14, 5, 6, 0, time.UTC) }
	return tmpl
}

func runCases(t *testing.T, tmpl *Template, cases []renderCase) {
	t.Helper()
	for _, c := range cases {
		got, err := tmpl.RenderVars(c.msgs, c.gen, c.vars)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// TestTinychat renders tinychat's ChatML template, which adds a default
// system turn when the conversation has none.
func TestTinychat(t *testing.T) {
	cfg, err := os.ReadFile(filepath.Join(tinychatDir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(tinychatDir, "chat_template.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := FromConfig(cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	const defSys = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
	runCases(t, tmpl, []renderCase{
		{"one turn", oneTurn, true, nil,
			defSys + "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"},
		{"one turn, no prompt", oneTurn, false, nil,
			defSys + "<|im_start|>user\nHello!<|im_end|>\n"},
		{"system", withSys, true, nil,
			"<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"},
		{"several turns", multi, true, nil,
			"<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\nHi. What do you need?<|im_end|>\n" +
				"<|im_start|>user\n  The time, with spaces around.  \n<|im_end|>\n<|im_start|>assistant\n"},
		{"several turns, no system, no prompt", noSysMul, false, nil,
			defSys + "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi. What do you need?<|im_end|>\n" +
				"<|im_start|>user\n  The time, with spaces around.  \n<|im_end|>\n"},
	})
}

// TestTinychatGolden renders the prompts of golden.json from their user
// text: the template gives the same text that HF's reference used.
func TestTinychatGolden(t *testing.T) {
	data, err := os.ReadFile("../../model/testdata/tinychat/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name string `json:"name"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	tmpl := loadTemplate(t, filepath.Join(tinychatDir, "chat_template.jinja"), Specials{})
	const head = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
	const tail = "<|im_end|>\n<|im_start|>assistant\n"
	n := 0
	for _, c := range cases {
		user, ok := strings.CutPrefix(c.Text, head)
		if !ok {
			continue // a raw prompt, not a chat
		}
		user, ok = strings.CutSuffix(user, tail)
		if !ok {
			t.Fatalf("%s: prompt does not end with the generation prompt", c.Name)
		}
		got, err := tmpl.Render([]Message{{"user", user}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.Text {
			t.Errorf("%s: rendered prompt differs from golden.json's", c.Name)
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d chat prompts in golden.json, want 3", n)
	}
}

// llamaHead is the system turn that Llama 3.1 and 3.2 begin with.
func llamaHead(date, system string) string {
	return "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
		"Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n" + system + "<|eot_id|>"
}

const (
	llamaUser1 = "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
	llamaAsst1 = "<|start_header_id|>assistant<|end_header_id|>\n\nHi. What do you need?<|eot_id|>"
	llamaUser2 = "<|start_header_id|>user<|end_header_id|>\n\nThe time, with spaces around.<|eot_id|>"
	llamaGen   = "<|start_header_id|>assistant<|end_header_id|>\n\n"
)

// weatherTool is a tool in the OpenAI format, its keys in sorted order
// (see the package docs on tojson with indent).
const weatherTool = `{"function": {"description": "Get the weather", "name": "get_weather", "parameters": {"properties": {"city": {"type": "string"}}, "required": ["city"], "type": "object"}}, "type": "function"}`

const weatherToolIndented = `{
    "function": {
        "description": "Get the weather",
        "name": "get_weather",
        "parameters": {
            "properties": {
                "city": {
                    "type": "string"
                }
            },
            "required": [
                "city"
            ],
            "type": "object"
        }
    },
    "type": "function"
}`

// TestLlama31 renders Llama 3.1 Instruct's template: a system turn with
// the knowledge and today dates always comes first, contents are trimmed,
// and tools go into the first user turn.
func TestLlama31(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/llama3.1-instruct.jinja", Specials{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>"})
	runCases(t, tmpl, []renderCase{
		{"one turn", oneTurn, true, nil, llamaHead("26 Jul 2024", "") + llamaUser1 + llamaGen},
		{"system", withSys, true, nil, llamaHead("26 Jul 2024", "You are terse.") + llamaUser1 + llamaGen},
		{"several turns", multi, true, nil,
			llamaHead("26 Jul 2024", "You are terse.") + llamaUser1 + llamaAsst1 + llamaUser2 + llamaGen},
		{"no prompt", noSysMul, false, nil, llamaHead("26 Jul 2024", "") + llamaUser1 + llamaAsst1 + llamaUser2},
		{"date_string", oneTurn, true, map[string]any{"date_string": "01 Jan 2025"},
			llamaHead("01 Jan 2025", "") + llamaUser1 + llamaGen},
		{"tools", []Message{sys, {"user", "Weather in Paris?"}}, true,
			map[string]any{"tools": []any{json.RawMessage(weatherTool)}},
			"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n" +
				"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\n" +
				"Given the following functions, please respond with a JSON for a function call " +
				"with its proper arguments that best answers the given prompt.\n\n" +
				`Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.` +
				"Do not use variables.\n\n" + weatherToolIndented + "\n\nWeather in Paris?<|eot_id|>" + llamaGen},
	})
}

// TestLlama32 renders Llama 3.2 Instruct's template, which dates the
// prompt with strftime_now.
func TestLlama32(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/llama3.2-instruct.jinja", Specials{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>"})
	runCases(t, tmpl, []renderCase{
		{"one turn", oneTurn, true, nil, llamaHead("03 Feb 2025", "") + llamaUser1 + llamaGen},
		{"several turns", multi, true, nil,
			llamaHead("03 Feb 2025", "You are terse.") + llamaUser1 + llamaAsst1 + llamaUser2 + llamaGen},
		{"date_string", withSys, false, map[string]any{"date_string": "26 Jul 2024"},
			llamaHead("26 Jul 2024", "You are terse.") + llamaUser1},
	})
}

// TestQwen25 renders Qwen2.5 Instruct's template, which has its own
// default system turn and writes tools with tojson.
func TestQwen25(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/qwen2.5-instruct.jinja", Specials{EOS: "<|im_end|>"})
	const defSys = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
	const u1 = "<|im_start|>user\nHello!<|im_end|>\n"
	const a1 = "<|im_start|>assistant\nHi. What do you need?<|im_end|>\n"
	const u2 = "<|im_start|>user\n  The time, with spaces around.  \n<|im_end|>\n"
	const gen = "<|im_start|>assistant\n"
	// Keys keep the order they have in the JSON, as in Python.
	const tool = `{"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}`
	runCases(t, tmpl, []renderCase{
		{"one turn", oneTurn, true, nil, defSys + u1 + gen},
		{"system", withSys, true, nil, "<|im_start|>system\nYou are terse.<|im_end|>\n" + u1 + gen},
		{"several turns", multi, true, nil, "<|im_start|>system\nYou are terse.<|im_end|>\n" + u1 + a1 + u2 + gen},
		{"no prompt", noSysMul, false, nil, defSys + u1 + a1 + u2},
		{"tools", oneTurn, true, map[string]any{"tools": []any{json.RawMessage(tool)}},
			"<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n" +
				"You may call one or more functions to assist with the user query.\n\n" +
				"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" + tool +
				"\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
				"<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" + u1 + gen},
	})
}

// TestGemma3 renders Gemma 3 Instruct's template, which has no system
// role: the system prompt opens the first user turn. The assistant is
// "model", and contents are trimmed.
func TestGemma3(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/gemma3-it.jinja", Specials{BOS: "<bos>", EOS: "<eos>"})
	const u1 = "<start_of_turn>user\nHello!<end_of_turn>\n"
	const a1 = "<start_of_turn>model\nHi. What do you need?<end_of_turn>\n"
	const u2 = "<start_of_turn>user\nThe time, with spaces around.<end_of_turn>\n"
	const gen = "<start_of_turn>model\n"
	runCases(t, tmpl, []renderCase{
		{"one turn", oneTurn, true, nil, "<bos>" + u1 + gen},
		{"system", withSys, true, nil, "<bos><start_of_turn>user\nYou are terse.\n\nHello!<end_of_turn>\n" + gen},
		{"several turns", multi, true, nil,
			"<bos><start_of_turn>user\nYou are terse.\n\nHello!<end_of_turn>\n" + a1 + u2 + gen},
		{"no prompt", noSysMul, false, nil, "<bos>" + u1 + a1 + u2},
	})
	_, err := tmpl.Render([]Message{user1, user1}, true)
	var te *TemplateError
	if !errors.As(err, &te) || te.Message != "Conversation roles must alternate user/assistant/user/assistant/..." {
		t.Errorf("two user turns: error %v, want the template's raise_exception", err)
	}
}

// TestEngine checks the Jinja features that chat templates lean on.
func TestEngine(t *testing.T) {
	msgs := []Message{{"user", "Hello"}, {"assistant", " Hi "}, {"user", "Bye"}}
	cases := []struct {
		name, src string
		sp        Specials
		vars      map[string]any
		want      string
	}{
		{"specials", "{{ bos_token }}|{{ eos_token }}", Specials{BOS: "<s>", EOS: "</s>"}, nil, "<s>|</s>"},
		{"unset specials", "{{ bos_token is defined }}|{{ bos_token }}|", Specials{}, nil, "False||"},
		{"generation prompt", "{{ add_generation_prompt }}", Specials{}, nil, "True"},
		{"tools is none", "{{ tools is none }} {{ documents is none }}", Specials{}, nil, "True True"},
		{"loop", "{% for m in messages %}{{ loop.index }}/{{ loop.length }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %} {% endfor %}",
			Specials{}, nil, "1/3F 2/3 3/3L "},
		{"loop.index0 and previtem", "{% for m in messages %}{{ loop.index0 }}{{ m.role[0] }}{% endfor %}", Specials{}, nil, "0u1a2u"},
		{"namespace", "{% set ns = namespace(n=0, last='') %}{% for m in messages %}{% set ns.n = ns.n + m.content|length %}{% set ns.last = m.role %}{% endfor %}{{ ns.n }} {{ ns.last }}",
			Specials{}, nil, "12 user"},
		{"slicing", "{{ messages[1:]|length }} {{ messages[-1].content }} {{ 'abcdef'[1:4] }} {{ 'abc'[::-1] }} {{ messages[:1][0].role }}",
			Specials{}, nil, "2 Bye bcd cba user"},
		{"string methods", "[{{ messages[1].content.strip() }}] {{ messages[0].content.startswith('He') }} {{ 'a.go'.endswith('.go') }} {{ 'a,b'.split(',')|join('+') }} {{ 'Ab'.upper() }}{{ 'Ab'.lower() }}",
			Specials{}, nil, "[Hi] True True a+b ABab"},
		{"trim filter", "[{{ messages[1].content|trim }}]", Specials{}, nil, "[Hi]"},
		{"tojson", "{{ messages[0]|tojson }} {{ 'é\"'|tojson }}", Specials{}, nil, `{"role": "user", "content": "Hello"} "é\""`},
		{"strftime_now", "{{ strftime_now('%Y-%m-%d %a %A %b %B %H:%M:%S %I%p %j %%') }}", Specials{}, nil,
			"2025-02-03 Mon Monday Feb February 14:05:06 02PM 034 %"},
		{"dict access", "{{ messages[0]['role'] }} {{ messages[0].get('content') }} {{ 'tool_calls' in messages[0] }} {{ messages[0].tool_calls is defined }}",
			Specials{}, nil, "user Hello False False"},
		{"vars", "{{ n + 1 }} {{ flag }} {{ obj.b[0] }} {{ obj|tojson }} {{ xs|join(',') }}", Specials{},
			map[string]any{"n": 41, "flag": true, "obj": json.RawMessage(`{"z": 1, "b": [2.5]}`), "xs": []any{"a", 1}},
			`42 True 2.5 {"z": 1, "b": [2.5]} a,1`},
		{"trim_blocks and lstrip_blocks", "a\n  {% if true %}\nb\n  {% endif %}\nc", Specials{}, nil, "a\nb\nc"},
		{"range", "{% for i in range(3) %}{{ i }}{% endfor %}{{ range(1, 10, 4)|list }}{{ range(3, 0, -1)|list }}", Specials{}, nil, "012[1, 5, 9][3, 2, 1]"},
		{"recursive macro", "{% macro f(n) %}[{{ n }}{% if n > 0 %}{{ f(n - 1) }}{% endif %}]{% endmacro %}{{ f(3) }}", Specials{}, nil, "[3[2[1[0]]]]"},
		{"macro whitespace", "{%- macro f(x) -%}\n  <{{ x }}>\n  {%- endmacro -%}\n{{ f(1) }}{% macro g() %}\n  y\n  {% endmacro %}{{ g() }}", Specials{}, nil, "<1>  y\n"},
	}
	for _, c := range cases {
		tmpl, err := Parse(c.src, c.sp)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		tmpl.Now = func() time.Time { return time.Date(2025, 2, 3, 14, 5, 6, 0, time.UTC) }
		got, err := tmpl.RenderVars(msgs, true, c.vars)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// TestMacroInstrumentation checks that counting macro depth does not
// change what a template writes, whatever its whitespace control.
func TestMacroInstrumentation(t *testing.T) {
	for _, src := range []string{
		"{% macro f(x) %}\n  <{{ x }}>\n{% endmacro %}\n{{ f(1) }}|",
		"{%- macro f(x) -%}\n  <{{ x }}>\n  {%- endmacro -%}\n{{ f(1) }}|",
		"{%- macro f(x) %}\n  <{{ x }}>\n  {% endmacro %}\n{{- f(1) -}}\n|",
		"{%+ macro f(x) +%}\n  <{{ x }}>\n  {%+ endmacro +%}\n{{ f(1) }}|",
		"{# {% macro no() %} #}{% raw %}{% macro no() %}{% endraw %}{% set s = '%}{% macro' %}{{ s }}",
		"{% macro outer() %}{% macro inner() %}i{% endmacro %}o{{ inner() }}{% endmacro %}{{ outer() }}",
		"{% macro f() %}{{ caller() }}{% endmacro %}{% call f() %}c{% endcall %}",
	} {
		plain, err := jinja.Compile(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		want, err := plain.Render(nil)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		tmpl, err := Parse(src, Specials{})
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		got, err := tmpl.Render(nil, false)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", src, got, err, want)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		src      string
		parseErr string // "" when Parse succeeds
		render   string
	}{
		{"{% if x %}never closed", "unclosed if", ""},
		{"{% for %}{% endfor %}", "missing 'in'", ""},
		{"{% endfor %}", `unknown statement "endfor"`, ""},
		{"{{ raise_exception('Only user and assistant roles are supported!') }}", "", "raise_exception: Only user and assistant roles are supported!"},
		{"{{ 'a' * 10000000000 }}", "", "bound of 16777216 output bytes"},
		{"{{ [1, 2]|selectattr('a')|list }}", "", "engine panic"},
		{"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "", "macros nested deeper than 200"},
		{"{{ range(10000000)|length }}", "", "range: more than"},
		{"{{ range(1, 2, 0) }}", "", "step must not be zero"},
		{"{{ range('a') }}", "", "want 1 to 3 integers"},
		{"{{ strftime_now() }}", "", "want a format string"},
	} {
		tmpl, err := Parse(c.src, Specials{})
		if c.parseErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.parseErr) {
				t.Errorf("Parse(%q): error %v, want one containing %q", c.src, err, c.parseErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", c.src, err)
			continue
		}
		_, err = tmpl.Render([]Message{user1}, true)
		if err == nil || !strings.Contains(err.Error(), c.render) {
			t.Errorf("Render(%q): error %v, want one containing %q", c.src, err, c.render)
		}
	}
	tmpl, err := Parse("x", Specials{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.RenderVars(nil, false, map[string]any{"c": make(chan int)}); err == nil {
		t.Error("RenderVars with a channel succeeded")
	}
	if _, err := tmpl.RenderVars(nil, false, map[string]any{"j": json.RawMessage(`{"a": `)}); err == nil {
		t.Error("RenderVars with broken JSON succeeded")
	}
}

func TestFromConfig(t *testing.T) {
	const tmpl = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
	quoted, _ := json.Marshal(tmpl)
	for _, c := range []struct {
		name   string
		config string
		file   []byte
		want   string
		err    string
	}{
		{"string", `{"chat_template": ` + string(quoted) + `, "bos_token": "<s>", "eos_token": "</s>"}`, nil, "<s>hi</s>", ""},
		{"token objects", `{"chat_template": ` + string(quoted) + `, "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": null}`, nil, "<s>hi", ""},
		{"named list", `{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": ` + string(quoted) + `}], "eos_token": "</s>"}`, nil, "hi</s>", ""},
		{"file wins", `{"chat_template": "config", "eos_token": "</s>"}`, []byte(tmpl), "hi</s>", ""},
		{"file without config", "", []byte("{{ messages[0].content }}"), "hi", ""},
		{"no default", `{"chat_template": [{"name": "tool_use", "template": "T"}]}`, nil, "", `no template named "default"`},
		{"no template", `{"eos_token": "</s>"}`, nil, "", "no chat template"},
		{"bad template type", `{"chat_template": 7}`, nil, "", "want a string or a list"},
		{"bad token", `{"chat_template": "x", "bos_token": 7}`, nil, "", "bos_token"},
		{"bad JSON", `{`, nil, "", "tokenizer_config.json"},
		{"syntax error", `{"chat_template": "{% if %}"}`, nil, "", "chat template"},
	} {
		var cfg []byte
		if c.config != "" {
			cfg = []byte(c.config)
		}
		tm, err := FromConfig(cfg, c.file)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		got, err := tm.Render([]Message{{"user", "hi"}}, false)
		if err != nil || got != c.want {
			t.Errorf("%s: Render = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

func TestStrftime(t *testing.T) {
	tm := time.Date(2024, 12, 1, 0, 7, 9, 0, time.FixedZone("X", 3600))
	for _, c := range []struct{ f, want string }{
		{"%d %b %Y", "01 Dec 2024"},
		{"%e|%I %p|%y|%F %T|%Z %z", " 1|12 AM|24|2024-12-01 00:07:09|X +0100"},
		{"100%% %q %", "100% %q %"},
		{"Jan 2 2006 15:04", "Jan 2 2006 15:04"},
	} {
		if got := strftime(c.f, tm); got != c.want {
			t.Errorf("strftime(%q) = %q, want %q", c.f, got, c.want)
		}
	}
}
