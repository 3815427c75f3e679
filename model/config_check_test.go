package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/internal/fuzzguard"
)

// tinyConfig returns the bundled tinychat's config.json with the given
// fields replaced (nil deletes a field).
func tinyConfig(t testing.TB, set map[string]any) []byte {
	t.Helper()
	data, err := os.ReadFile("../models/tinychat/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, _ := json.Marshal(m)
	return out
}

// TestConfigBounds: sizes that are negative, zero, huge or inconsistent
// are one-line errors naming the field, from ParseConfig alone.
func TestConfigBounds(t *testing.T) {
	for _, tc := range []struct {
		set  map[string]any
		want string
	}{
		{map[string]any{"head_dim": -2}, "head_dim is -2"},
		{map[string]any{"head_dim": int64(1) << 31}, "head_dim is 2147483648"},
		{map[string]any{"head_dim": int64(1) << 40}, "head_dim is 1099511627776"},
		{map[string]any{"head_dim": 7}, "even"},
		{map[string]any{"num_hidden_layers": 1_000_000_000}, "num_hidden_layers is 1000000000"},
		{map[string]any{"num_hidden_layers": -1}, "num_hidden_layers is -1"},
		{map[string]any{"hidden_size": 1 << 30}, "hidden_size is 1073741824"},
		{map[string]any{"intermediate_size": 0}, "intermediate_size is 0"},
		{map[string]any{"vocab_size": 1 << 25}, "vocab_size is 33554432"},
		{map[string]any{"num_attention_heads": 6, "num_key_value_heads": 12}, "multiple"},
		{map[string]any{"num_key_value_heads": -2}, "num_key_value_heads"},
		{map[string]any{"max_position_embeddings": 1 << 30}, "max_position_embeddings is 1073741824"},
		{map[string]any{"rms_norm_eps": -1}, "rms_norm_eps"},
		{map[string]any{"rope_parameters": map[string]any{"rope_theta": -5.0}}, "rope_theta"},
		{map[string]any{"sliding_window": 1 << 30}, "sliding_window"},
		{map[string]any{"num_attention_heads": 4096, "num_key_value_heads": 4096, "head_dim": 4096}, "num_attention_heads × head_dim"},
	} {
		_, err := ParseConfig(tinyConfig(t, tc.set))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line with %q", tc.set, err, tc.want)
		}
	}
	if _, err := ParseConfig(tinyConfig(t, nil)); err != nil {
		t.Errorf("tinychat's own config: %v", err)
	}
}

// TestConfigWeightBytes: a config within the bounds that describes more
// weights than the files hold fails in Load before anything is allocated
// from it.
func TestConfigWeightBytes(t *testing.T) {
	src, err := filepath.Abs("../models/tinychat")
	if err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(src, "*.safetensors*"))
	if len(names) == 0 {
		t.Skip("no bundled tinychat weights")
	}
	for _, set := range []map[string]any{
		{"num_hidden_layers": 4000},
		{"intermediate_size": 1 << 24},
		{"vocab_size": 1 << 24},
	} {
		dir := t.TempDir()
		for _, n := range names {
			if err := os.Symlink(n, filepath.Join(dir, filepath.Base(n))); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), tinyConfig(t, set), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(Source{Dir: dir}, testPool)
		if err == nil {
			m.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "does not belong to these weights") {
			t.Errorf("%v: %v", set, err)
		}
	}
}

// FuzzParseConfig: no config.json panics ParseConfig, and one it accepts
// has every size within the bounds.
func FuzzParseConfig(f *testing.F) {
	f.Add(tinyConfig(f, nil))
	f.Add(tinyConfig(f, map[string]any{"head_dim": -2}))
	f.Add(tinyConfig(f, map[string]any{"architectures": []string{"Gemma3ForCausalLM"}, "sliding_window": 512, "layer_types": []string{"sliding_attention"}}))
	f.Add(tinyConfig(f, map[string]any{"rope_parameters": map[string]any{"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}))
	f.Add([]byte(`{"architectures":["Qwen3ForCausalLM"],"text_config":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer fuzzguard.Start(t, len(data))()
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if c.check() != nil || len(c.Sliding) != c.Layers || c.HeadDim%2 != 0 || c.Heads%c.KVHeads != 0 {
			t.Fatalf("accepted an inconsistent config: %+v", c)
		}
	})
}
