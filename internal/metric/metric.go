// Package metric keeps counters, gauges and histograms and writes them in
// Prometheus' text exposition format (version 0.0.4).
//
// It covers what kvserve's /metrics needs — families with labels, functions
// read at scrape time, constant labels on a whole registry (model_name), the
// Go runtime's and the process's usual series — with the standard library
// alone. The names of its types follow prometheus/client_golang's, so code
// reads the same; it exists because that module (and the protobuf runtime
// it pulls in) took about a seventh of the compile time of a cold build
// of the kvserve binary (go build -debug-actiongraph).
package metric

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Labels are label names with their values.
type Labels map[string]string

// Opts name a family and describe it. The full name is
// Namespace_Subsystem_Name, leaving out empty parts.
type Opts struct {
	Namespace, Subsystem, Name, Help string
}

// CounterOpts, GaugeOpts: the options of a counter or a gauge family.
type (
	CounterOpts = Opts
	GaugeOpts   = Opts
)

// HistogramOpts are a histogram family's options; Buckets are the upper
// bounds, increasing (+Inf is implied). Nil means DefBuckets.
type HistogramOpts struct {
	Namespace, Subsystem, Name, Help string
	Buckets                          []float64
}

// DefBuckets span 5 ms to 10 s, as client_golang's do.
var DefBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func (o Opts) fullName() string {
	var parts []string
	for _, p := range []string{o.Namespace, o.Subsystem, o.Name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "_")
}

// ExponentialBuckets returns count bounds: start, start×factor, …
func ExponentialBuckets(start, factor float64, count int) []float64 {
	b := make([]float64, count)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

// LinearBuckets returns count bounds: start, start+width, …
func LinearBuckets(start, width float64, count int) []float64 {
	b := make([]float64, count)
	for i := range b {
		b[i] = start + float64(i)*width
	}
	return b
}

// A Collector is something a Registry can write: one family or more.
type Collector interface {
	// collect appends the collector's families to out.
	collect(out *[]family)
	// describe returns the names of the families collect writes, without
	// reading any value.
	describe() []string
}

// family is one metric family at scrape time.
type family struct {
	name, help, typ string
	samples         []sample
}

// sample is one line: name suffix, label pairs (in order) and value.
type sample struct {
	suffix string
	labels []labelPair
	value  float64
}

type labelPair struct{ name, value string }

// Registry holds collectors and writes them. Its constant labels are put on
// every series it writes.
type Registry struct {
	mu         sync.Mutex
	collectors []Collector
	constant   []labelPair
}

// NewRegistry returns an empty registry whose series all carry constant.
func NewRegistry(constant Labels) *Registry {
	r := &Registry{}
	for k, v := range constant {
		r.constant = append(r.constant, labelPair{k, v})
	}
	sort.Slice(r.constant, func(i, j int) bool { return r.constant[i].name < r.constant[j].name })
	return r
}

// MustRegister adds collectors. Registering the same family name twice is a
// programming error and panics.
func (r *Registry) MustRegister(cs ...Collector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range append(r.collectors, cs...) {
		for _, name := range c.describe() {
			if seen[name] {
				panic(fmt.Sprintf("metric: family %q registered twice", name))
			}
			seen[name] = true
		}
	}
	r.collectors = append(r.collectors, cs...)
}

// SetConstant puts the label name=value on every series the registry
// writes (a server names its model once the model is known).
func (r *Registry) SetConstant(name, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.constant {
		if r.constant[i].name == name {
			r.constant[i].value = value
			return
		}
	}
	r.constant = append(r.constant, labelPair{name, value})
	sort.Slice(r.constant, func(i, j int) bool { return r.constant[i].name < r.constant[j].name })
}

// families returns the registry's families sorted by name, constant labels
// added.
func (r *Registry) families() []family {
	r.mu.Lock()
	cs := append([]Collector(nil), r.collectors...)
	constant := append([]labelPair(nil), r.constant...)
	r.mu.Unlock()
	var fams []family
	for _, c := range cs {
		c.collect(&fams)
	}
	if len(constant) > 0 {
		for i := range fams {
			for j := range fams[i].samples {
				s := &fams[i].samples[j]
				s.labels = append(append([]labelPair(nil), constant...), s.labels...)
			}
		}
	}
	sort.SliceStable(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	return fams
}

// WriteText writes every family of the registries in the text format. When
// several registries hold a family of one name (one per served model), its
// series are written under one HELP and TYPE.
func WriteText(w io.Writer, regs ...*Registry) error {
	var all []family
	for _, r := range regs {
		all = append(all, r.families()...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].name < all[j].name })
	var b strings.Builder
	for i, f := range all {
		if i == 0 || all[i-1].name != f.name {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
		}
		for _, s := range f.samples {
			b.WriteString(f.name)
			b.WriteString(s.suffix)
			if len(s.labels) > 0 {
				b.WriteByte('{')
				for k, l := range s.labels {
					if k > 0 {
						b.WriteByte(',')
					}
					b.WriteString(l.name)
					b.WriteString(`="`)
					b.WriteString(escapeLabel(l.value))
					b.WriteByte('"')
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(formatValue(s.value))
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Handler serves the registries in the text format.
func Handler(regs ...*Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteText(w, regs...)
	})
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// atomicFloat is a float64 updated without locks.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) add(d float64) {
	for {
		old := f.bits.Load()
		if f.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

func (f *atomicFloat) set(v float64) { f.bits.Store(math.Float64bits(v)) }
func (f *atomicFloat) load() float64 { return math.Float64frombits(f.bits.Load()) }

// Counter is a value that only goes up.
type Counter struct {
	opts Opts
	v    atomicFloat
}

// NewCounter returns a counter family with one series.
func NewCounter(o CounterOpts) *Counter { return &Counter{opts: o} }

// Inc adds 1.
func (c *Counter) Inc() { c.v.add(1) }

// Add adds d, which must not be negative.
func (c *Counter) Add(d float64) {
	if d < 0 {
		panic("metric: counter decreased")
	}
	c.v.add(d)
}

// Value returns the counter's value.
func (c *Counter) Value() float64 { return c.v.load() }

func (c *Counter) describe() []string { return []string{c.opts.fullName()} }

func (c *Counter) collect(out *[]family) {
	*out = append(*out, family{c.opts.fullName(), c.opts.Help, "counter", []sample{{value: c.v.load()}}})
}

// Gauge is a value that goes up and down.
type Gauge struct {
	opts Opts
	v    atomicFloat
}

// NewGauge returns a gauge family with one series.
func NewGauge(o GaugeOpts) *Gauge { return &Gauge{opts: o} }

// Set sets the gauge.
func (g *Gauge) Set(v float64) { g.v.set(v) }

// Add adds d (negative to subtract).
func (g *Gauge) Add(d float64) { g.v.add(d) }

// Value returns the gauge's value.
func (g *Gauge) Value() float64 { return g.v.load() }

func (g *Gauge) describe() []string { return []string{g.opts.fullName()} }

func (g *Gauge) collect(out *[]family) {
	*out = append(*out, family{g.opts.fullName(), g.opts.Help, "gauge", []sample{{value: g.v.load()}}})
}

// funcMetric is a gauge or counter whose value is read at scrape time.
type funcMetric struct {
	opts Opts
	typ  string
	f    func() float64
}

// NewGaugeFunc returns a gauge whose value f gives at each scrape.
func NewGaugeFunc(o GaugeOpts, f func() float64) Collector { return &funcMetric{o, "gauge", f} }

// NewCounterFunc returns a counter whose value f gives at each scrape; f
// must never decrease.
func NewCounterFunc(o CounterOpts, f func() float64) Collector { return &funcMetric{o, "counter", f} }

func (m *funcMetric) describe() []string { return []string{m.opts.fullName()} }

func (m *funcMetric) collect(out *[]family) {
	*out = append(*out, family{m.opts.fullName(), m.opts.Help, m.typ, []sample{{value: m.f()}}})
}

// Histogram counts observations into buckets.
type Histogram struct {
	opts    HistogramOpts
	mu      sync.Mutex
	counts  []uint64 // per bucket, not cumulative; last is +Inf
	sum     float64
	count   uint64
	buckets []float64
}

// NewHistogram returns a histogram family with one series.
func NewHistogram(o HistogramOpts) *Histogram {
	b := o.Buckets
	if b == nil {
		b = DefBuckets
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			panic(fmt.Sprintf("metric: histogram %s: buckets not increasing", o.Name))
		}
	}
	return &Histogram{opts: o, buckets: b, counts: make([]uint64, len(b)+1)}
}

// Observe counts v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.buckets, v) // first bound ≥ v
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.count++
	h.mu.Unlock()
}

// Count returns the number of observations and their sum.
func (h *Histogram) Count() (n uint64, sum float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count, h.sum
}

func (h *Histogram) samples(labels []labelPair) []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sample, 0, len(h.buckets)+3)
	var cum uint64
	for i, b := range h.buckets {
		cum += h.counts[i]
		out = append(out, sample{"_bucket", append(append([]labelPair(nil), labels...), labelPair{"le", formatValue(b)}), float64(cum)})
	}
	out = append(out,
		sample{"_bucket", append(append([]labelPair(nil), labels...), labelPair{"le", "+Inf"}), float64(h.count)},
		sample{"_sum", labels, h.sum},
		sample{"_count", labels, float64(h.count)})
	return out
}

func (h *Histogram) describe() []string { return []string{h.opts.fullName()} }

func (h *Histogram) collect(out *[]family) {
	*out = append(*out, family{h.opts.fullName(), h.opts.Help, "histogram", h.samples(nil)})
}

func (o HistogramOpts) fullName() string {
	return Opts{Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name}.fullName()
}

// Desc describes a family that a collector made by NewCollectorFunc writes:
// its full name, help, type ("counter" or "gauge") and label names.
type Desc struct {
	Name, Help, Type string
	Labels           []string
}

// funcCollector writes, at each scrape, what its function emits.
type funcCollector struct {
	descs []Desc
	f     func(emit func(name string, value float64, labelValues ...string))
}

// NewCollectorFunc returns a collector that calls f at each scrape; f
// emits samples of the described families, one call of emit per series,
// label values in the order of the family's label names. Emitting a name
// not described, or the wrong number of values, panics (a programming
// error).
func NewCollectorFunc(descs []Desc, f func(emit func(name string, value float64, labelValues ...string))) Collector {
	return &funcCollector{descs, f}
}

func (c *funcCollector) describe() []string {
	names := make([]string, len(c.descs))
	for i, d := range c.descs {
		names[i] = d.Name
	}
	return names
}

func (c *funcCollector) collect(out *[]family) {
	start := len(*out)
	index := map[string]int{}
	for i, d := range c.descs {
		index[d.Name] = i
		*out = append(*out, family{d.Name, d.Help, d.Type, nil})
	}
	c.f(func(name string, value float64, labelValues ...string) {
		i, ok := index[name]
		if !ok {
			panic(fmt.Sprintf("metric: %s emitted but not described", name))
		}
		d := c.descs[i]
		if len(labelValues) != len(d.Labels) {
			panic(fmt.Sprintf("metric: %s: %d label values for labels %v", name, len(labelValues), d.Labels))
		}
		ls := make([]labelPair, len(d.Labels))
		for j, l := range d.Labels {
			ls[j] = labelPair{l, labelValues[j]}
		}
		f := &(*out)[start+i]
		f.samples = append(f.samples, sample{labels: ls, value: value})
	})
	for i := range c.descs { // series in label order, whatever order f emitted them
		ss := (*out)[start+i].samples
		sort.SliceStable(ss, func(a, b int) bool { return labelKey(ss[a].labels) < labelKey(ss[b].labels) })
	}
}

func labelKey(ls []labelPair) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.value)
		b.WriteByte(0xff)
	}
	return b.String()
}
