package server

import (
	"math"
	"sync"

	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/retrieve"
)

// retrievalFor sets the job's retrieval: the request's kv_retrieval and
// kv_retrieval_budget, each falling back to the server's (Config.Retrieval,
// Config.RetrievalBudget); "none" or "" means none. Each choice gets its
// own retriever (and, with Config.RetrievalCold, its own cold tier, which
// the garbage collector frees with the last block that reads it).
func (s *Server) retrievalFor(p *sampling, job *engine.Job) *apiError {
	name, budget := s.cfg.Retrieval, s.cfg.RetrievalBudget
	if p.KVRetrieval != nil {
		name = *p.KVRetrieval
	}
	if b := p.KVRetrievalBudget; b != nil {
		switch {
		case *b > 0 && *b <= 1:
			budget = retrieve.Budget{Fraction: *b}
		case *b > 1 && *b == math.Trunc(*b) && *b < 1<<31:
			budget = retrieve.Budget{Tokens: int(*b)}
		default:
			return invalid("kv_retrieval_budget", "invalid_value", "kv_retrieval_budget %v must be a fraction in (0, 1] or a whole number of tokens", *b)
		}
	}
	if name == "" || name == "none" {
		return nil
	}
	if err := retrieve.Check(name); err != nil {
		return invalid("kv_retrieval", "invalid_value", "%v", err)
	}
	if budget.Check() != nil {
		return invalid("kv_retrieval_budget", "invalid_value", "kv_retrieval %s needs kv_retrieval_budget: a fraction in (0, 1] or a whole number of tokens", name)
	}
	cfg, cold := s.b.Net.Config, s.cfg.RetrievalCold
	var ends []bool
	if name == "sentencekv" {
		ends = s.sentenceEnds()
	}
	job.Retrieve = func(prompt []int) model.Retriever {
		opt := retrieve.Options{Budget: budget, SentenceEnd: ends}
		if cold {
			opt.Cold = kvcache.NewColdTier()
		}
		r, err := retrieve.New(name, cfg, opt)
		if err != nil { // checked above: the name and budget are valid
			panic(err)
		}
		r.Tokens(prompt)
		return r
	}
	return nil
}

// sentenceEnds returns, once computed, which token ids end a sentence.
func (s *Server) sentenceEnds() []bool {
	s.endsOnce.Do(func() {
		s.ends = retrieve.SentenceEnds(func(id int) string { return s.b.Tokenizer.Decode([]int{id}) }, s.b.Net.Config.VocabSize)
	})
	return s.ends
}

// sentenceTable is the Server's lazily built table of sentence ends.
type sentenceTable struct {
	endsOnce sync.Once
	ends     []bool
}
