package model

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyFixture copies an arch fixture into a temp dir and lets edit change
// its config and safetensors bytes.
func copyFixture(t *testing.T, name string, editConfig func(map[string]any), editWeights func([]byte) []byte) string {
	t.Helper()
	src := filepath.Join("testdata/archs", name)
	dir := t.TempDir()
	cfgData, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if editConfig != nil {
		var cfg map[string]any
		if err := json.Unmarshal(cfgData, &cfg); err != nil {
			t.Fatal(err)
		}
		editConfig(cfg)
		if cfgData, err = json.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
	}
	weights, err := os.ReadFile(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if editWeights != nil {
		weights = editWeights(weights)
	}
	for name, data := range map[string][]byte{"config.json": cfgData, "model.safetensors": weights} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dropTensor rewrites a safetensors file without one header entry.
func dropTensor(name string) func([]byte) []byte {
	return func(b []byte) []byte {
		n := binary.LittleEndian.Uint64(b)
		var h map[string]json.RawMessage
		if err := json.Unmarshal(b[8:8+n], &h); err != nil {
			panic(err)
		}
		delete(h, name)
		hdr, _ := json.Marshal(h)
		out := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		return append(append(out, hdr...), b[8+n:]...)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name        string
		fixture     string
		editConfig  func(map[string]any)
		editWeights func([]byte) []byte
		want        []string // substrings of the one-line error
	}{
		{"unknown architecture", "qwen2", func(c map[string]any) { c["architectures"] = []string{"GPTNeoXForCausalLM"} }, nil,
			[]string{`unsupported architecture "GPTNeoXForCausalLM"`}},
		{"truncated weights", "qwen2", nil, func(b []byte) []byte { return b[:len(b)/2] },
			[]string{"model.safetensors", "truncated"}},
		{"not safetensors", "qwen2", nil, func([]byte) []byte { return []byte("<html>404</html>") },
			[]string{"model.safetensors"}},
		{"wrong shape", "llama3-ropescaled", func(c map[string]any) { c["intermediate_size"] = 96 }, nil,
			[]string{"model.safetensors", `"model.layers.0.mlp.gate_proj.weight"`, "shape [128 64], want [96 64]"}},
		{"missing tensor", "qwen3", nil, dropTensor("model.layers.1.self_attn.k_norm.weight"),
			[]string{`missing tensor "model.layers.1.self_attn.k_norm.weight"`}},
		{"bad rope type", "mistral-swa", func(c map[string]any) {
			c["rope_parameters"] = map[string]any{"rope_type": "ntk-magic", "rope_theta": 10000.0}
		}, nil, []string{`unsupported rope_type "ntk-magic"`}},
		{"heads not divisible", "qwen2", func(c map[string]any) { c["num_key_value_heads"] = 3 }, nil,
			[]string{"not a multiple"}},
		{"config not json", "qwen2", func(c map[string]any) { c["hidden_size"] = "big" }, nil,
			[]string{"config.json"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyFixture(t, tc.fixture, tc.editConfig, tc.editWeights)
			m, err := Load(Source{Dir: dir}, testPool)
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

// TestOlderConfigKeys checks that pre-transformers-5 configs (top-level
// rope_theta and rope_scaling) load to the same settings.
func TestOlderConfigKeys(t *testing.T) {
	data, err := os.ReadFile("testdata/archs/llama3-ropescaled/config.json")
	if err != nil {
		t.Fatal(err)
	}
	newCfg, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(data, &raw)
	rp := raw["rope_parameters"].(map[string]any)
	delete(raw, "rope_parameters")
	delete(raw, "head_dim")
	raw["hidden_size"] = 64.0 // 4 heads × 16: head_dim derived
	raw["rope_theta"] = rp["rope_theta"]
	scaling := map[string]any{}
	for k, v := range rp {
		if k != "rope_theta" {
			scaling[k] = v
		}
	}
	raw["rope_scaling"] = scaling
	old, _ := json.Marshal(raw)
	oldCfg, err := ParseConfig(old)
	if err != nil {
		t.Fatal(err)
	}
	if oldCfg.RopeFull != newCfg.RopeFull || oldCfg.HeadDim != 16 {
		t.Fatalf("old-style config gives rope %+v head_dim %d, new-style %+v", oldCfg.RopeFull, oldCfg.HeadDim, newCfg.RopeFull)
	}
}

func TestForwardErrors(t *testing.T) {
	m := loadDir(t, "testdata/archs/qwen2")
	cache := m.NewCache()
	if _, err := m.Forward(cache, []int{1, 4096}, LastLogits); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("out-of-vocabulary token: err = %v", err)
	}
	long := make([]int, m.Config.MaxPositions+1)
	if _, err := m.Forward(cache, long, LastLogits); err == nil || !strings.Contains(err.Error(), "past the model's context") {
		t.Errorf("too long: err = %v", err)
	}
	if cache.Next() != 0 {
		t.Errorf("failed calls moved the cache to %d", cache.Next())
	}
}
