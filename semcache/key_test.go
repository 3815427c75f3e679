package semcache

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func mustKey(t *testing.T, body string) *Request {
	t.Helper()
	r, err := ParseRequest([]byte(body))
	if err != nil {
		t.Fatalf("ParseRequest(%s): %v", body, err)
	}
	return r
}

func TestExactKeyEquivalences(t *testing.T) {
	base := `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32}`
	for _, tc := range []struct{ name, body string }{
		{"key order and spacing", "{ \"max_tokens\" : 32 ,\n \"temperature\": 0, \"messages\": [ {\"content\": \"What is 2+2?\", \"role\": \"user\"} ], \"model\": \"m\" }"},
		{"number spelling", `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0.0,"max_tokens":3.2e1}`},
		{"max_completion_tokens", `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_completion_tokens":32}`},
		{"defaults", `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32,"n":1,"presence_penalty":0,"frequency_penalty":0,"tools":[],"logit_bias":{},"response_format":{"type":"text"},"stop":null}`},
		{"greedy ignores seed and top_p", `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32,"seed":7,"top_p":0.5,"top_k":40}`},
		{"top_k 1 is greedy", `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"top_k":1,"max_tokens":32}`},
		{"answer-neutral fields", `{"model":"m","messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32,"stream":true,"stream_options":{"include_usage":true},"user":"u1","cache_salt":"s","semcache_category":"math"}`},
		{"text parts", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is "},{"type":"text","text":"2+2?"}]}],"temperature":0,"max_tokens":32}`},
		{"role case", `{"model":"m","messages":[{"role":" User","content":"What is 2+2?"}],"temperature":0,"max_tokens":32}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a, b := mustKey(t, base).ExactKey(), mustKey(t, tc.body).ExactKey(); a != b {
				t.Fatalf("keys differ:\n%s\n%s", base, tc.body)
			}
		})
	}
	stopA := mustKey(t, `{"prompt":"x","stop":"END"}`).ExactKey()
	stopB := mustKey(t, `{"prompt":"x","stop":["END","END"],"max_tokens":16}`).ExactKey()
	if stopA != stopB {
		t.Fatal("stop as a string, repeated in a list, and the completions max_tokens default must not count")
	}
	nfc := mustKey(t, `{"prompt":"café"}`).ExactKey()
	nfd := mustKey(t, `{"prompt":"cafe\u0301"}`).ExactKey()
	if nfc != nfd {
		t.Fatal("NFC and NFD spellings must share a key")
	}
}

func TestExactKeyDifferences(t *testing.T) {
	base := `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32}`
	for _, tc := range []struct{ name, body string }{
		{"model", `{"model":"m2","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32}`},
		{"question", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+3?"}],"temperature":0,"max_tokens":32}`},
		{"question case", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"what is 2+2?"}],"temperature":0,"max_tokens":32}`},
		{"system", `{"model":"m","messages":[{"role":"system","content":"Be long."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32}`},
		{"role", `{"model":"m","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32}`},
		{"temperature", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0.5,"max_tokens":32}`},
		{"max_tokens", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":33}`},
		{"no max_tokens", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0}`},
		{"stop", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32,"stop":"."}`},
		{"tools", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32,"tools":[{"type":"function","function":{"name":"add"}}]}`},
		{"unknown field", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32,"reasoning_effort":"high"}`},
		{"press", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":32,"kv_press":"snapkv"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a, b := mustKey(t, base).ExactKey(), mustKey(t, tc.body).ExactKey(); a == b {
				t.Fatalf("keys equal:\n%s\n%s", base, tc.body)
			}
		})
	}
}

func TestSurfaceText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"  What  does  strings.Split  do  in  Go?  ", "what does strings.split do in go"},
		{"WHAT IS 20 TIMES 36?", "what is 20 times 36"},
		{"What is 20 times 36 ?\n", "what is 20 times 36"},
		{"Hi! What is the capital of France?", "what is the capital of france"},
		{"Could you answer this? What is 2+2?", "what is 2+2"},
		{"Quick question - How can I sleep better?", "how can i sleep better"},
		{"Please tell me: What is the capital of Chile?", "what is the capital of chile"},
		{"Hi!", "hi"},
		{"What is 2-2?", "what is 2-2"},
	} {
		if got := SurfaceText(tc.in); got != tc.want {
			t.Errorf("SurfaceText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	a := mustKey(t, `{"messages":[{"role":"user","content":"Hey, WHAT is 20 times 36 ?"}],"temperature":0}`)
	b := mustKey(t, `{"messages":[{"role":"user","content":"what is 20 times 36"}],"temperature":0}`)
	c := mustKey(t, `{"messages":[{"role":"user","content":"what is 20 times 37"}],"temperature":0}`)
	if a.ExactKey() == b.ExactKey() || a.SurfaceKey() != b.SurfaceKey() || b.SurfaceKey() == c.SurfaceKey() {
		t.Fatal("surface keys must join surface variants and keep other numbers apart")
	}
	if a.PartitionKey() != c.PartitionKey() {
		t.Fatal("requests that differ only in the question share a partition")
	}
}

func TestParseRequestErrors(t *testing.T) {
	for _, body := range []string{``, `[]`, `null`, `{"model":"m"}`, `{"messages":[]}`, `{"messages":[{"role":"system","content":"x"}]}`,
		`{"messages":"hi"}`, `{"prompt":["a","b"]}`, `{"prompt":7}`, `{"prompt":"x","semcache_category":3}`,
		`{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`} {
		if _, err := ParseRequest([]byte(body)); err == nil {
			t.Errorf("ParseRequest(%s) succeeded, want an error", body)
		}
	}
}

// variant writes the same request in another spelling: fields in reverse
// order with extra space, max_completion_tokens, content as text parts,
// stop as a list, default-valued and answer-neutral fields added.
func variant(model, system, user string, temp float64, maxTok int, stop string) string {
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	r := []rune(user)
	parts := []map[string]string{{"type": "text", "text": string(r[:len(r)/2])}, {"type": "text", "text": string(r[len(r)/2:])}}
	fields := []string{
		fmt.Sprintf(`"n" : 1`), `"stream": true`, `"user" : "someone"`, `"top_p": 1`, `"presence_penalty": 0.0`,
		fmt.Sprintf(`"max_completion_tokens": %d`, maxTok),
		fmt.Sprintf(`"temperature" : %s`, strconv.FormatFloat(temp, 'e', -1, 64)),
		fmt.Sprintf(`"messages": [ {"content": %s, "role": "system"}, {"role": "user", "content": %s} ]`, js(system), js(parts)),
		fmt.Sprintf(`"model": %s`, js(model)),
	}
	if stop != "" {
		fields = append(fields, fmt.Sprintf(`"stop": [%s, %s]`, js(stop), js(stop)))
	}
	return "{\n  " + strings.Join(fields, " ,\n  ") + "\n}"
}

func plain(model, system, user string, temp float64, maxTok int, stop string) string {
	m := map[string]any{"model": model, "temperature": temp, "max_tokens": maxTok,
		"messages": []map[string]string{{"role": "system", "content": system}, {"role": "user", "content": user}}}
	if stop != "" {
		m["stop"] = stop
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// FuzzExactKey checks that equal meaning gives equal keys and that any
// change of model, messages, sampling or stop gives another key.
func FuzzExactKey(f *testing.F) {
	f.Add("tinychat", "You are helpful.", "What does errors.As do in Go?", 0.0, 32, "")
	f.Add("m", "", "Hi", 0.7, 1, "END")
	f.Add("", "s", "\u00e9t\u00e9 ", 1.5, 4096, "\n")
	f.Fuzz(func(t *testing.T, model, system, user string, temp float64, maxTok int, stop string) {
		if temp != temp || temp < 0 || temp > 2 || maxTok < 1 || len(user) < 2 {
			return
		}
		for _, s := range []string{model, system, user, stop} {
			if !json.Valid([]byte(fmt.Sprintf("%q", s))) || strings.ContainsRune(s, '\r') || strings.ToValidUTF8(s, "") != s {
				return
			}
		}
		a, err := ParseRequest([]byte(plain(model, system, user, temp, maxTok, stop)))
		if err != nil {
			t.Fatalf("plain: %v", err)
		}
		b, err := ParseRequest([]byte(variant(model, system, user, temp, maxTok, stop)))
		if err != nil {
			t.Fatalf("variant: %v\n%s", err, variant(model, system, user, temp, maxTok, stop))
		}
		if a.ExactKey() != b.ExactKey() {
			t.Fatalf("equal meaning, different keys:\n%s\n%s", plain(model, system, user, temp, maxTok, stop), variant(model, system, user, temp, maxTok, stop))
		}
		changes := []string{
			plain(model+"x", system, user, temp, maxTok, stop),
			plain(model, system+"x", user, temp, maxTok, stop),
			plain(model, system, user+"x", temp, maxTok, stop),
			plain(model, system, "x"+user, temp, maxTok, stop),
			plain(model, system, user, temp, maxTok+1, stop),
			plain(model, system, user, temp+0.25, maxTok, stop),
			plain(model, system, user, temp, maxTok, stop+"x"),
			strings.Replace(plain(model, system, user, temp, maxTok, stop), `"model"`, `"tools":[{"type":"function"}],"model"`, 1),
		}
		if temp != 0 {
			changes = append(changes, strings.Replace(plain(model, system, user, temp, maxTok, stop), `"model"`, `"seed":5,"model"`, 1))
		}
		for _, body := range changes {
			c, err := ParseRequest([]byte(body))
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if c.ExactKey() == a.ExactKey() {
				t.Fatalf("changed request, same key:\n%s\n%s", plain(model, system, user, temp, maxTok, stop), body)
			}
		}
	})
}

// FuzzParseRequest feeds arbitrary bodies: no panic, and a parsed request
// always has keys.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"messages":[{"role":"user","content":"hi"}]}`, `{"prompt":"x","stop":["a",1]}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_completion_tokens":null,"temperature":1e400}`, `{}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body)
		if err != nil {
			return
		}
		if r.ExactKey() == "" || r.SurfaceKey() == "" || r.PartitionKey() == "" {
			t.Fatal("empty key")
		}
	})
}
