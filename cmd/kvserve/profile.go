package main

import (
	"fmt"
	"io"
	"math/rand"
	"sort"
	"strings"

	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
)

// cmdProfileHeads finds DuoAttention's retrieval heads on synthetic
// passkey prompts and writes a head file.
func cmdProfileHeads(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("profile-heads", "[--model DIR] [--out heads.json] [--samples N] [--length T]",
		"Profiles DuoAttention's retrieval and streaming heads on synthetic passkey\n"+
			"prompts: about T tokens of Go-like filler lines with the needle \"The special\n"+
			"magic number is NNNNNNN.\" at a random depth and the question at the end.\n"+
			"The question's tokens attend over the cache with attention recorded; a KV\n"+
			"head's score is the share of their attention (summed over the head's query\n"+
			"group, averaged over queries and samples) that lands on the needle's tokens.\n"+
			"duo_attention with this file (bench accuracy --duo-heads) makes the ratio's share of\n"+
			"heads with the lowest scores streaming heads (sinks + recent window); the\n"+
			"file also marks the heads above the median as retrieval heads (R in the\n"+
			"printed layer × head table), the split razor_attention and compresskv use.", stderr)
	mf := addModelFlags(fs)
	out := fs.String("out", "heads.json", "head file to write")
	samples := fs.Int("samples", 8, "passkey prompts to average over")
	length := fs.Int("length", 1000, "prompt length in tokens (about)")
	seed := fs.Int64("seed", 1, "random seed of the synthetic prompts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *samples <= 0 {
		return usageError{"--samples must be positive"}
	}
	if *length < 64 {
		return usageError{"--length must be at least 64"}
	}
	b, _, closeAll, err := mf.open()
	if err != nil {
		return err
	}
	defer closeAll()
	if err := b.NeedTokenizer("the passkey prompts"); err != nil {
		return err
	}
	m := b.Net
	c := m.Config
	if c.MaxPositions > 0 && *length > c.MaxPositions {
		return usageError{fmt.Sprintf("--length %d exceeds the model's context of %d", *length, c.MaxPositions)}
	}
	rng := rand.New(rand.NewSource(*seed))
	scores := make([][]float64, c.Layers)
	for l := range scores {
		scores[l] = make([]float64, c.KVHeads)
	}
	for range *samples {
		p := passkeyPrompt(rng, b.Tokenizer.Encode, *length)
		if bos, ok := b.Tokenizer.BOS(); ok {
			p = p.shift(bos)
		}
		share, err := needleShare(m, p)
		if err != nil {
			return err
		}
		for l := range scores {
			for g := range scores[l] {
				scores[l][g] += share[l][g] / float64(*samples)
			}
		}
	}
	h := classifyHeads(b.Name, scores)
	if err := h.Write(*out); err != nil {
		return err
	}
	headTable(stdout, h)
	fmt.Fprintf(stderr, "wrote %s\n", *out)
	return nil
}

// passkey is a tokenized prompt: the needle is tokens[needleLo:needleHi]
// and the question the last question tokens.
type passkey struct {
	tokens             []int
	needleLo, needleHi int
	question           int
}

// shift puts a token (BOS) in front.
func (p passkey) shift(tok int) passkey {
	p.tokens = append([]int{tok}, p.tokens...)
	p.needleLo++
	p.needleHi++
	return p
}

var fillerNames = []string{"x", "y", "z", "n", "count", "total", "buf", "idx", "sum", "acc", "left", "right", "tmp", "val", "off", "size"}

// passkeyPrompt builds about length tokens: filler lines, the needle at a
// random depth among them, then the question.
func passkeyPrompt(rng *rand.Rand, encode func(string) []int, length int) passkey {
	magic := 1000000 + rng.Intn(9000000)
	needle := encode(fmt.Sprintf("The special magic number is %d.\n", magic))
	question := encode("\nWhat is the special magic number? The special magic number is")
	room := length - len(needle) - len(question)
	var lines [][]int
	for have := 0; have < room; {
		pick := func() string { return fillerNames[rng.Intn(len(fillerNames))] }
		ids := encode(fmt.Sprintf("%s := %s + %s // filler\n", pick(), pick(), pick()))
		if have+len(ids) > room && have > 0 {
			break
		}
		lines = append(lines, ids)
		have += len(ids)
	}
	depth := rng.Intn(len(lines) + 1)
	var p passkey
	for i, ids := range lines {
		if i == depth {
			p.needleLo = len(p.tokens)
			p.tokens = append(p.tokens, needle...)
			p.needleHi = len(p.tokens)
		}
		p.tokens = append(p.tokens, ids...)
	}
	if depth == len(lines) {
		p.needleLo = len(p.tokens)
		p.tokens = append(p.tokens, needle...)
		p.needleHi = len(p.tokens)
	}
	p.tokens = append(p.tokens, question...)
	p.question = len(question)
	return p
}

// needleShare prefills the prompt up to the question, then runs the
// question with attention recorded and returns, per layer and KV head, the
// mean share of the question's attention that lands on the needle.
func needleShare(m *model.Model, p passkey) ([][]float64, error) {
	c := m.Config
	seq := m.NewCache()
	defer seq.Release()
	n := len(p.tokens)
	ctx := n - p.question
	if _, err := m.Forward(seq, p.tokens[:ctx], model.NoLogits); err != nil {
		return nil, err
	}
	obs := &model.Observer{From: ctx, Attention: true}
	if _, err := m.ForwardObserved(seq, p.tokens[ctx:], model.NoLogits, obs); err != nil {
		return nil, err
	}
	rows := float64(p.question * (c.Heads / c.KVHeads))
	out := make([][]float64, c.Layers)
	for l := range out {
		out[l] = make([]float64, c.KVHeads)
		for g := range out[l] {
			sum := obs.AttnSum[l][g]
			for j := p.needleLo; j < p.needleHi && j < len(sum); j++ {
				out[l][g] += float64(sum[j])
			}
			out[l][g] /= rows
		}
	}
	return out, nil
}

// classifyHeads marks heads scoring strictly above the median of all
// heads as retrieval heads.
func classifyHeads(name string, scores [][]float64) *press.HeadFile {
	var all []float64
	for _, row := range scores {
		all = append(all, row...)
	}
	sort.Float64s(all)
	median := 0.0
	if k := len(all); k > 0 {
		median = (all[(k-1)/2] + all[k/2]) / 2
	}
	h := &press.HeadFile{Model: name, Layers: len(scores), Scores: scores, Retrieval: make([][]bool, len(scores))}
	for l, row := range scores {
		h.KVHeads = len(row)
		h.Retrieval[l] = make([]bool, len(row))
		for g, s := range row {
			h.Retrieval[l][g] = s > median
		}
	}
	return h
}

// headTable prints the needle share of each layer × KV head, R marking
// retrieval heads.
func headTable(w io.Writer, h *press.HeadFile) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-6s", "layer")
	for g := range h.KVHeads {
		fmt.Fprintf(&sb, " %9s", fmt.Sprintf("head %d", g))
	}
	fmt.Fprintln(w, sb.String())
	retrieval := 0
	for l, row := range h.Scores {
		sb.Reset()
		fmt.Fprintf(&sb, "%-6d", l)
		for g, s := range row {
			mark := " "
			if h.Retrieval[l][g] {
				mark = "R"
				retrieval++
			}
			fmt.Fprintf(&sb, " %8.4f%s", s, mark)
		}
		fmt.Fprintln(w, sb.String())
	}
	fmt.Fprintf(w, "%d of %d KV heads are retrieval heads (R: needle share above the median)\n", retrieval, h.Layers*h.KVHeads)
}
