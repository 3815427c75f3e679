package retrieve

import (
	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// oracle picks the tokens of the highest exact attention weight: for
// each query head of the group, softmax over every cached token (sinks
// and window included), summed over the group. It reads every key each
// step, so it saves no reads: it is the upper bound that practical
// selectors are measured against.
type oracle struct {
	sh    *shape
	s     []float32
	vote  []float32
	cands []int
}

func newOracle(sh *shape) selector { return &oracle{sh: sh} }

func (o *oracle) extend(kvcache.View, func(int) int, int) {}

func (o *oracle) resident() int64 { return 0 }

func (o *oracle) pick(dst []int, kv kvcache.View, q []float32, lo, hi, budget int) ([]int, int64) {
	g, d := o.sh.group, o.sh.headDim
	n := kv.Len()
	o.s = grow(o.s, g*n)
	read := keyScores(o.s, kv, q, g, d, 0, n, o.sh.scale)
	for h := range g {
		row := o.s[h*n : (h+1)*n]
		for j := range row {
			row[j] += kv.Bias(j)
		}
		compute.Softmax(row)
	}
	o.vote = grow(o.vote, n)
	clear(o.vote)
	for h := range g {
		for j, p := range o.s[h*n : (h+1)*n] {
			o.vote[j] += p
		}
	}
	o.cands = o.cands[:0]
	for j := lo; j < hi; j++ {
		o.cands = append(o.cands, j)
	}
	return append(dst, topK(o.cands, o.vote, budget)...), read
}
