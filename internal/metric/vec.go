package metric

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// vec is a family of series told apart by label values.
type vec[T any] struct {
	names    []string
	mu       sync.Mutex
	children map[string]*child[T]
	make     func() T
}

type child[T any] struct {
	values []string
	m      T
}

func newVec[T any](names []string, mk func() T) vec[T] {
	return vec[T]{names: names, children: map[string]*child[T]{}, make: mk}
}

// with returns the series of the label values, creating it at first use.
// A wrong number of values is a programming error and panics.
func (v *vec[T]) with(values []string) T {
	if len(values) != len(v.names) {
		panic(fmt.Sprintf("metric: %d label values for labels %v", len(values), v.names))
	}
	key := strings.Join(values, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.children[key]
	if !ok {
		c = &child[T]{append([]string(nil), values...), v.make()}
		v.children[key] = c
	}
	return c.m
}

// sorted returns the series in label-value order, each with its label pairs.
func (v *vec[T]) sorted() (ms []T, labels [][]labelPair) {
	v.mu.Lock()
	keys := make([]string, 0, len(v.children))
	for k := range v.children {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := v.children[k]
		ls := make([]labelPair, len(v.names))
		for i, n := range v.names {
			ls[i] = labelPair{n, c.values[i]}
		}
		ms = append(ms, c.m)
		labels = append(labels, ls)
	}
	v.mu.Unlock()
	return ms, labels
}

// CounterVec is a counter family with labels.
type CounterVec struct {
	opts Opts
	vec[*Counter]
}

// NewCounterVec returns a counter family with the label names.
func NewCounterVec(o CounterOpts, labelNames []string) *CounterVec {
	return &CounterVec{o, newVec(labelNames, func() *Counter { return &Counter{opts: o} })}
}

// WithLabelValues returns the counter of the label values, in the order of
// the label names.
func (v *CounterVec) WithLabelValues(values ...string) *Counter { return v.with(values) }

func (v *CounterVec) describe() []string { return []string{v.opts.fullName()} }

func (v *CounterVec) collect(out *[]family) {
	cs, ls := v.sorted()
	f := family{v.opts.fullName(), v.opts.Help, "counter", nil}
	for i, c := range cs {
		f.samples = append(f.samples, sample{labels: ls[i], value: c.v.load()})
	}
	*out = append(*out, f)
}

// GaugeVec is a gauge family with labels.
type GaugeVec struct {
	opts Opts
	vec[*Gauge]
}

// NewGaugeVec returns a gauge family with the label names.
func NewGaugeVec(o GaugeOpts, labelNames []string) *GaugeVec {
	return &GaugeVec{o, newVec(labelNames, func() *Gauge { return &Gauge{opts: o} })}
}

// WithLabelValues returns the gauge of the label values.
func (v *GaugeVec) WithLabelValues(values ...string) *Gauge { return v.with(values) }

func (v *GaugeVec) describe() []string { return []string{v.opts.fullName()} }

func (v *GaugeVec) collect(out *[]family) {
	gs, ls := v.sorted()
	f := family{v.opts.fullName(), v.opts.Help, "gauge", nil}
	for i, g := range gs {
		f.samples = append(f.samples, sample{labels: ls[i], value: g.v.load()})
	}
	*out = append(*out, f)
}

// HistogramVec is a histogram family with labels.
type HistogramVec struct {
	opts HistogramOpts
	vec[*Histogram]
}

// NewHistogramVec returns a histogram family with the label names.
func NewHistogramVec(o HistogramOpts, labelNames []string) *HistogramVec {
	NewHistogram(o) // check the buckets now
	return &HistogramVec{o, newVec(labelNames, func() *Histogram { return NewHistogram(o) })}
}

// WithLabelValues returns the histogram of the label values.
func (v *HistogramVec) WithLabelValues(values ...string) *Histogram { return v.with(values) }

func (v *HistogramVec) describe() []string { return []string{v.opts.fullName()} }

func (v *HistogramVec) collect(out *[]family) {
	hs, ls := v.sorted()
	f := family{v.opts.fullName(), v.opts.Help, "histogram", nil}
	for i, h := range hs {
		f.samples = append(f.samples, h.samples(ls[i])...)
	}
	*out = append(*out, f)
}
