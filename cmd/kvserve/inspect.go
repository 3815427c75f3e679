package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kvserve/kvserve/gguf"
	"github.com/kvserve/kvserve/internal/mmap"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/model/safetensors"
	"github.com/kvserve/kvserve/tokenizer"
)

// inspectReport is what inspect prints, and its --json form.
type inspectReport struct {
	Path         string          `json:"path"`
	Format       string          `json:"format"` // "gguf" or "safetensors"
	Architecture string          `json:"architecture"`
	Config       *inspectConfig  `json:"config,omitempty"`
	ConfigError  string          `json:"config_error,omitempty"`
	Tensors      []inspectTensor `json:"tensors"`
	TensorBytes  int64           `json:"tensor_bytes"`
	Tokenizer    *inspectTok     `json:"tokenizer,omitempty"`
	TokError     string          `json:"tokenizer_error,omitempty"`
}

type inspectConfig struct {
	Family         string  `json:"family"`
	Layers         int     `json:"layers"`
	Hidden         int     `json:"hidden"`
	Heads          int     `json:"heads"`
	KVHeads        int     `json:"kv_heads"`
	HeadDim        int     `json:"head_dim"`
	Intermediate   int     `json:"intermediate"`
	Vocab          int     `json:"vocab"`
	Context        int     `json:"context"`
	RMSNormEps     float32 `json:"rms_norm_eps"`
	Activation     string  `json:"activation"`
	TiedEmbeddings bool    `json:"tied_embeddings"`
	AttentionBias  bool    `json:"attention_bias"`
	QKNorm         bool    `json:"qk_norm"`
	Rope           string  `json:"rope"`
	RopeSliding    string  `json:"rope_sliding,omitempty"`
	SlidingWindow  int     `json:"sliding_window"`
	SlidingLayers  int     `json:"sliding_layers"`
	FinalSoftcap   float32 `json:"final_softcap,omitempty"`
	AttnSoftcap    float32 `json:"attn_softcap,omitempty"`
	EmbedScale     float32 `json:"embed_scale"`
	NormAddOne     bool    `json:"norm_add_one"`
}

type inspectTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"` // outermost first, as PyTorch writes it
	Bytes int64  `json:"bytes"`
	// Load is the storage type kvserve keeps a GGUF matrix in once loaded
	// (its own blocks for Q8_0, Q4_0, Q5_0, Q4_K and Q6_K, "q4" for Q4_1, "f32" for types it dequantizes).
	Load string `json:"load,omitempty"`
}

type inspectTok struct {
	Type         string         `json:"type"`
	Pre          string         `json:"pre,omitempty"`
	Vocab        int            `json:"vocab"`
	Merges       int            `json:"merges,omitempty"`
	Special      []inspectToken `json:"special"`
	BOS          *inspectToken  `json:"bos,omitempty"`
	EOS          *inspectToken  `json:"eos,omitempty"`
	ChatTemplate bool           `json:"chat_template"`
}

type inspectToken struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
}

func cmdInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "PATH [--json]",
		"Describes a model without running it: PATH is a .gguf file or a Hugging Face\n"+
			"model folder. Prints the architecture and dimensions, every tensor with its\n"+
			"dtype, shape (outermost first) and size, and the tokenizer: type, vocabulary,\n"+
			"special tokens and whether a chat template is present.", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	// PATH may come before or after the flags.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"inspect needs a PATH: a .gguf file or a model folder"}
	}
	path := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	var r *inspectReport
	if st.IsDir() {
		if !looksLikeModelFolder(path) {
			return fmt.Errorf("%s is not a model folder: it has neither config.json nor *.safetensors (give a Hugging Face model folder or a .gguf file)", path)
		}
		r, err = inspectFolder(path)
	} else {
		r, err = inspectGGUF(path)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.print(stdout)
}

// inspectGGUF reads a GGUF file's header, mapping rather than reading it.
func inspectGGUF(path string) (*inspectReport, error) {
	mf, err := mmap.Open(path)
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	f, err := gguf.Parse(mf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &inspectReport{Path: path, Format: fmt.Sprintf("gguf v%d", f.Version), Architecture: f.Architecture()}
	if cfg, err := model.GGUFConfig(f); err != nil {
		r.ConfigError = err.Error()
	} else {
		r.Config = configReport(cfg)
		if f.Tensor("rope_freqs.weight") != nil {
			r.Config.Rope += " × rope_freqs (Llama 3 scaling)"
		}
	}
	for _, t := range f.Tensors {
		r.add(t.Name, t.Type.String(), t.Shape(), int64(len(t.Data)))
		if dt, ok := model.GGUFMatDType(t.Type); ok && len(t.Dims) == 2 {
			r.Tensors[len(r.Tensors)-1].Load = dt.String()
		}
	}
	md, err := f.TokenizerMetadata()
	if err != nil {
		r.TokError = err.Error()
		return r, nil
	}
	tok := &inspectTok{Type: md.Model, Pre: md.Pre, Vocab: len(md.Tokens), Merges: len(md.Merges), ChatTemplate: md.ChatTemplate != ""}
	if md.Model == "gpt2" {
		tok.Type = "gpt2 (byte-level BPE)"
	}
	token := func(id int) *inspectToken {
		if id < 0 || id >= len(md.Tokens) {
			return nil
		}
		return &inspectToken{id, md.Tokens[id]}
	}
	for id, typ := range md.TokenTypes {
		if typ == gguf.TokenTypeControl || typ == gguf.TokenTypeUserDefined {
			tok.Special = append(tok.Special, *token(id))
		}
	}
	tok.BOS = token(md.BOS)
	tok.EOS = token(md.EOS)
	r.Tokenizer = tok
	return r, nil
}

// inspectFolder reads a Hugging Face folder: config.json, the safetensors
// headers and the tokenizer files.
func inspectFolder(dir string) (*inspectReport, error) {
	r := &inspectReport{Path: dir, Format: "safetensors"}
	if data, err := os.ReadFile(filepath.Join(dir, "config.json")); err != nil {
		r.ConfigError = err.Error()
	} else {
		var raw struct {
			Architectures []string `json:"architectures"`
		}
		if json.Unmarshal(data, &raw) == nil && len(raw.Architectures) > 0 {
			r.Architecture = raw.Architectures[0]
		}
		if cfg, err := model.ParseConfig(data); err != nil {
			r.ConfigError = err.Error()
		} else {
			r.Config = configReport(cfg)
		}
	}
	files := []string{"model.safetensors"}
	if data, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json")); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("%s: model.safetensors.index.json: %w", dir, err)
		}
		files = files[:0]
		seen := map[string]bool{}
		for _, f := range idx.WeightMap {
			if !seen[f] && f == filepath.Base(f) {
				seen[f] = true
				files = append(files, f)
			}
		}
		sort.Strings(files)
	}
	for _, name := range files {
		mf, err := mmap.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		sf, err := safetensors.Parse(mf.Bytes())
		if err != nil {
			mf.Close()
			return nil, fmt.Errorf("%s: %s: %w", dir, name, err)
		}
		for _, n := range sf.Names() {
			t := sf.Tensors[n]
			r.add(n, string(t.DType), t.Shape, int64(len(t.Data)))
		}
		mf.Close()
	}
	sort.SliceStable(r.Tensors, func(i, j int) bool { return naturalLess(r.Tensors[i].Name, r.Tensors[j].Name) })

	tk, err := tokenizer.LoadDir(dir)
	if err != nil {
		r.TokError = err.Error()
		return r, nil
	}
	tok := &inspectTok{Type: "byte-level BPE (tokenizer.json)", Vocab: tk.VocabSize()}
	for id := range tk.VocabSize() {
		if tk.IsSpecial(id) {
			tok.Special = append(tok.Special, inspectToken{id, tk.TokenString(id)})
		}
	}
	if id, ok := tk.BOS(); ok {
		tok.BOS = &inspectToken{id, tk.TokenString(id)}
	}
	if id, ok := tk.EOS(); ok {
		tok.EOS = &inspectToken{id, tk.TokenString(id)}
	}
	if _, err := os.Stat(filepath.Join(dir, "chat_template.jinja")); err == nil {
		tok.ChatTemplate = true
	} else if data, err := os.ReadFile(filepath.Join(dir, tokenizer.ConfigFile)); err == nil {
		var c struct {
			ChatTemplate json.RawMessage `json:"chat_template"`
		}
		tok.ChatTemplate = json.Unmarshal(data, &c) == nil && len(c.ChatTemplate) > 0 && string(c.ChatTemplate) != "null"
	}
	r.Tokenizer = tok
	return r, nil
}

func (r *inspectReport) add(name, dtype string, shape []int, bytes int64) {
	r.Tensors = append(r.Tensors, inspectTensor{Name: name, DType: dtype, Shape: shape, Bytes: bytes})
	r.TensorBytes += bytes
}

func configReport(c *model.Config) *inspectConfig {
	rope := func(r model.Rope) string {
		s := fmt.Sprintf("%s, theta %g", r.Type, r.Theta)
		switch r.Type {
		case "linear":
			s += fmt.Sprintf(", factor %g", r.Factor)
		case "llama3":
			s += fmt.Sprintf(", factor %g, low %g, high %g, original context %d", r.Factor, r.LowFreqFactor, r.HighFreqFactor, r.OriginalMaxPositions)
		}
		return s
	}
	ic := &inspectConfig{
		Family: string(c.Family), Layers: c.Layers, Hidden: c.HiddenSize, Heads: c.Heads, KVHeads: c.KVHeads,
		HeadDim: c.HeadDim, Intermediate: c.IntermediateSize, Vocab: c.VocabSize, Context: c.MaxPositions,
		RMSNormEps: c.RMSNormEps, Activation: c.Activation, TiedEmbeddings: c.TieEmbeddings,
		AttentionBias: c.AttentionBias, QKNorm: c.QKNorm, Rope: rope(c.RopeFull), SlidingWindow: c.SlidingWindow,
		FinalSoftcap: c.FinalSoftcap, AttnSoftcap: c.AttnSoftcap, EmbedScale: c.EmbedScale, NormAddOne: c.NormAddOne,
	}
	for _, s := range c.Sliding {
		if s {
			ic.SlidingLayers++
		}
	}
	if c.RopeSliding != c.RopeFull && ic.SlidingLayers > 0 {
		ic.RopeSliding = rope(c.RopeSliding)
	}
	return ic
}

func (r *inspectReport) print(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)\n", r.Path, r.Format)
	fmt.Fprintf(&b, "architecture  %s\n", r.Architecture)
	if c := r.Config; c != nil {
		fmt.Fprintf(&b, "family        %s\n", c.Family)
		fmt.Fprintf(&b, "layers        %d\n", c.Layers)
		fmt.Fprintf(&b, "hidden        %d\n", c.Hidden)
		fmt.Fprintf(&b, "heads         %d (kv heads %d, head_dim %d)\n", c.Heads, c.KVHeads, c.HeadDim)
		fmt.Fprintf(&b, "intermediate  %d (%s)\n", c.Intermediate, c.Activation)
		fmt.Fprintf(&b, "vocab         %d\n", c.Vocab)
		fmt.Fprintf(&b, "context       %d\n", c.Context)
		fmt.Fprintf(&b, "rope          %s\n", c.Rope)
		if c.RopeSliding != "" {
			fmt.Fprintf(&b, "rope sliding  %s\n", c.RopeSliding)
		}
		if c.SlidingWindow > 0 {
			fmt.Fprintf(&b, "window        %d tokens on %d of %d layers\n", c.SlidingWindow, c.SlidingLayers, c.Layers)
		}
		var extras []string
		if c.TiedEmbeddings {
			extras = append(extras, "tied embeddings")
		}
		if c.AttentionBias {
			extras = append(extras, "q/k/v biases")
		}
		if c.QKNorm {
			extras = append(extras, "q/k norms")
		}
		extras = append(extras, fmt.Sprintf("rms_norm_eps %g", c.RMSNormEps))
		fmt.Fprintf(&b, "other         %s\n", strings.Join(extras, ", "))
	}
	if r.ConfigError != "" {
		fmt.Fprintf(&b, "config        kvserve cannot run this model: %s\n", r.ConfigError)
	}

	byType := map[string][2]int64{}
	width := 4
	for _, t := range r.Tensors {
		width = max(width, len(t.Name))
		x := byType[t.DType]
		byType[t.DType] = [2]int64{x[0] + 1, x[1] + t.Bytes}
	}
	types := make([]string, 0, len(byType))
	for d := range byType {
		types = append(types, d)
	}
	sort.Strings(types)
	var summary []string
	for _, d := range types {
		summary = append(summary, fmt.Sprintf("%d %s (%s)", byType[d][0], d, humanBytes(byType[d][1])))
	}
	fmt.Fprintf(&b, "\ntensors       %d, %s (%d bytes): %s\n", len(r.Tensors), humanBytes(r.TensorBytes), r.TensorBytes, strings.Join(summary, ", "))
	loads := false
	for _, t := range r.Tensors {
		loads = loads || t.Load != ""
	}
	if loads {
		fmt.Fprintf(&b, "  %-*s  %-6s  %-8s  %-14s  %s\n", width, "name", "dtype", "loads as", "shape", "bytes")
	} else {
		fmt.Fprintf(&b, "  %-*s  %-6s  %-14s  %s\n", width, "name", "dtype", "shape", "bytes")
	}
	for _, t := range r.Tensors {
		if loads {
			fmt.Fprintf(&b, "  %-*s  %-6s  %-8s  %-14s  %d\n", width, t.Name, t.DType, t.Load, fmt.Sprint(t.Shape), t.Bytes)
		} else {
			fmt.Fprintf(&b, "  %-*s  %-6s  %-14s  %d\n", width, t.Name, t.DType, fmt.Sprint(t.Shape), t.Bytes)
		}
	}

	fmt.Fprintln(&b)
	if tk := r.Tokenizer; tk != nil {
		fmt.Fprintf(&b, "tokenizer     %s", tk.Type)
		if tk.Pre != "" {
			fmt.Fprintf(&b, ", pre-tokenizer %s", tk.Pre)
		}
		fmt.Fprintf(&b, "\nvocab         %d tokens", tk.Vocab)
		if tk.Merges > 0 {
			fmt.Fprintf(&b, ", %d merges", tk.Merges)
		}
		fmt.Fprintf(&b, "\nspecial       %d:", len(tk.Special))
		const most = 16
		for i, s := range tk.Special {
			if i == most {
				fmt.Fprintf(&b, " … %d more", len(tk.Special)-most)
				break
			}
			fmt.Fprintf(&b, " %d %q", s.ID, s.Text)
		}
		fmt.Fprintln(&b)
		tokStr := func(t *inspectToken) string {
			if t == nil {
				return "none"
			}
			return fmt.Sprintf("%d %q", t.ID, t.Text)
		}
		fmt.Fprintf(&b, "bos           %s\neos           %s\n", tokStr(tk.BOS), tokStr(tk.EOS))
		yes := "no"
		if tk.ChatTemplate {
			yes = "yes"
		}
		fmt.Fprintf(&b, "chat template %s\n", yes)
	}
	if r.TokError != "" {
		fmt.Fprintf(&b, "tokenizer     unreadable: %s\n", r.TokError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// humanBytes writes a size in KiB, MiB or GiB.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// naturalLess orders names with their digit runs compared as numbers, so
// that layers.2 comes before layers.10.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// looksLikeModelFolder reports whether dir holds a config.json or any
// safetensors file, the marks of a Hugging Face model folder.
func looksLikeModelFolder(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return true
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	return len(m) > 0
}
