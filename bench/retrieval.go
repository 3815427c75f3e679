package bench

import (
	"fmt"
	"strings"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/press"
	"github.com/kvserve/kvserve/retrieve"
)

// RetrievalSpec is one retrieval setting of an accuracy run: a selector
// of package retrieve, its budget, and where the unread KV lives.
type RetrievalSpec struct {
	Name   string
	Budget retrieve.Budget
	// Cold is "" (the KV stays in the pool), "memory" (a cold region of
	// memory a step fetches from) or "disk" (a temporary file).
	Cold string
	// ColdDir is the directory of the disk tier's file ("" for the
	// system's temporary directory).
	ColdDir string
}

func (s RetrievalSpec) String() string {
	name := s.Name + "@" + s.Budget.String()
	if s.Cold != "" {
		name += "/cold-" + s.Cold
	}
	return name
}

// RetrievalResult is what a run's decode steps read under retrieval,
// beside the run's kv_bytes: means per decode step over every record and
// turn, summed over layers and KV heads.
type RetrievalResult struct {
	Retrieval string `json:"retrieval"`
	Budget    string `json:"budget"`
	Cold      string `json:"cold,omitempty"`
	// KVBytesReadPerStep is the keys and values attended plus what
	// selection read (kv_bytes_attended_per_step +
	// index_bytes_read_per_step).
	KVBytesReadPerStep float64 `json:"kv_bytes_read_per_step"`
	retrieve.Stats
	// FullBF16BytesPerStep is what a step would read of a bf16 cache of
	// the same tokens with no retrieval.
	FullBF16BytesPerStep float64 `json:"full_bf16_bytes_per_step"`
}

// retrievalRuns is the accuracy harness's retrieval state: one spec per
// run (nil for runs without retrieval) and each run's retriever for the
// record in progress.
type retrievalRuns struct {
	specs []*RetrievalSpec
	b     *engine.Bundle
	ends  []bool
	live  []*retrieve.Retriever
	tiers []*kvcache.ColdTier
	sums  []retrieve.Stats // per run: sums of the per-step means × steps
}

// withRetrieval returns the presses of the runs, each press once per
// spec (none: once, without retrieval), and the runs' retrieval state (nil
// without specs).
func withRetrieval(b *engine.Bundle, presses []*press.Press, specs []RetrievalSpec) ([]*press.Press, *retrievalRuns) {
	if len(specs) == 0 {
		return presses, nil
	}
	rr := &retrievalRuns{b: b}
	var out []*press.Press
	for _, p := range presses {
		for i := range specs {
			out = append(out, p)
			rr.specs = append(rr.specs, &specs[i])
		}
	}
	rr.live = make([]*retrieve.Retriever, len(out))
	rr.tiers = make([]*kvcache.ColdTier, len(out))
	rr.sums = make([]retrieve.Stats, len(out))
	for _, s := range specs {
		if s.Name == "sentencekv" {
			rr.ends = retrieve.SentenceEnds(func(id int) string { return b.Tokenizer.Decode([]int{id}) }, b.Net.Config.VocabSize)
			break
		}
	}
	return out, rr
}

// label names the runs' retrieval.
func (rr *retrievalRuns) label(runs []*Run) {
	if rr == nil {
		return
	}
	for i, run := range runs {
		s := rr.specs[i]
		run.RetrievalResult = &RetrievalResult{Retrieval: s.Name, Budget: s.Budget.String(), Cold: s.Cold}
	}
}

// request gives run i's request for the prompt ids the record's retriever
// (made at the record's first turn).
func (rr *retrievalRuns) request(i int, ids []int, req *engine.Request) error {
	if rr == nil {
		return nil
	}
	r := rr.live[i]
	if r == nil {
		s := rr.specs[i]
		opt := retrieve.Options{Budget: s.Budget, SentenceEnd: rr.ends}
		switch s.Cold {
		case "":
		case "memory":
			rr.tiers[i] = kvcache.NewColdTier()
		case "disk":
			t, err := kvcache.NewDiskTier(s.ColdDir)
			if err != nil {
				return err
			}
			rr.tiers[i] = t
		default:
			return fmt.Errorf("cold tier %q: want memory or disk", s.Cold)
		}
		opt.Cold = rr.tiers[i]
		var err error
		if r, err = retrieve.New(s.Name, rr.b.Net.Config, opt); err != nil {
			return err
		}
		rr.live[i] = r
	}
	r.Tokens(ids)
	req.Retrieve = r
	return nil
}

// endRecord adds the record's reads to its runs and drops the retrievers
// and tiers.
func (rr *retrievalRuns) endRecord() {
	if rr == nil {
		return
	}
	for i, r := range rr.live {
		if r == nil {
			continue
		}
		st, n := r.Stats(), 0.0
		n = float64(st.Steps)
		sum := &rr.sums[i]
		sum.Steps += st.Steps
		sum.KVBytesRead += st.KVBytesRead * n
		sum.IndexBytesRead += st.IndexBytesRead * n
		sum.TokensRead += st.TokensRead * n
		sum.TokensCached += st.TokensCached * n
		sum.Resident += st.Resident * n
		sum.ColdFetched += st.ColdFetched * n
		rr.live[i] = nil
		if rr.tiers[i] != nil {
			rr.tiers[i].Close()
			rr.tiers[i] = nil
		}
	}
}

// finish turns the sums into the runs' means.
func (rr *retrievalRuns) finish(runs []*Run, headDim int) {
	if rr == nil {
		return
	}
	for i, run := range runs {
		s := rr.sums[i]
		res := run.RetrievalResult
		if s.Steps == 0 {
			continue
		}
		n := float64(s.Steps)
		res.Stats = retrieve.Stats{Steps: s.Steps, KVBytesRead: s.KVBytesRead / n, IndexBytesRead: s.IndexBytesRead / n,
			TokensRead: s.TokensRead / n, TokensCached: s.TokensCached / n, Resident: s.Resident / n, ColdFetched: s.ColdFetched / n}
		res.KVBytesReadPerStep = res.KVBytesRead + res.IndexBytesRead
		res.FullBF16BytesPerStep = res.TokensCached * float64(4*headDim)
	}
}

// retrievalLine writes a run's reads under its table.
func (r *RetrievalResult) line() string {
	if r == nil || r.Steps == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "retrieval %s at budget %s", r.Retrieval, r.Budget)
	if r.Cold != "" {
		fmt.Fprintf(&b, ", full KV in a cold tier (%s)", r.Cold)
	}
	fmt.Fprintf(&b, ": per decode step %.0f of %.0f tokens read (%.3f), %.0f bytes read (%.0f attended + %.0f index) = %.3f of a bf16 cache; resident %.0f bytes = %.3f of bf16",
		r.TokensRead, r.TokensCached, r.TokensRead/r.TokensCached, r.KVBytesReadPerStep, r.KVBytesRead, r.IndexBytesRead,
		r.KVBytesReadPerStep/r.FullBF16BytesPerStep, r.Resident, r.Resident/r.FullBF16BytesPerStep*float64(1))
	if r.Cold != "" {
		fmt.Fprintf(&b, "; %.0f bytes fetched from the cold tier per step", r.ColdFetched)
	}
	return b.String()
}
