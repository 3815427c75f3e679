package metric

import (
	"math"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

func TestWriteText(t *testing.T) {
	tests := []struct {
		name  string
		build func(r *Registry)
		want  string
	}{
		{"counter", func(r *Registry) {
			c := NewCounter(CounterOpts{Namespace: "kv", Name: "tokens_total", Help: "Tokens.\nTwo lines."})
			r.MustRegister(c)
			c.Add(2.5)
			c.Inc()
		}, "# HELP kv_tokens_total Tokens.\\nTwo lines.\n# TYPE kv_tokens_total counter\nkv_tokens_total{model_name=\"m\"} 3.5\n"},
		{"gauge func and infinities", func(r *Registry) {
			r.MustRegister(NewGaugeFunc(GaugeOpts{Name: "g", Help: "h"}, func() float64 { return math.Inf(-1) }))
		}, "# HELP g h\n# TYPE g gauge\ng{model_name=\"m\"} -Inf\n"},
		{"counter vec sorted, escaped", func(r *Registry) {
			v := NewCounterVec(CounterOpts{Name: "req_total", Help: "h"}, []string{"path", "code"})
			r.MustRegister(v)
			v.WithLabelValues("/v1/x", "200").Inc()
			v.WithLabelValues("/a\"b\\", "4\n0").Add(2)
		}, "# HELP req_total h\n# TYPE req_total counter\n" +
			"req_total{model_name=\"m\",path=\"/a\\\"b\\\\\",code=\"4\\n0\"} 2\n" +
			"req_total{model_name=\"m\",path=\"/v1/x\",code=\"200\"} 1\n"},
		{"histogram cumulative", func(r *Registry) {
			h := NewHistogram(HistogramOpts{Name: "lat", Help: "h", Buckets: []float64{0.1, 1}})
			r.MustRegister(h)
			for _, v := range []float64{0.05, 0.1, 0.5, 7} {
				h.Observe(v)
			}
		}, "# HELP lat h\n# TYPE lat histogram\n" +
			"lat_bucket{model_name=\"m\",le=\"0.1\"} 2\nlat_bucket{model_name=\"m\",le=\"1\"} 3\nlat_bucket{model_name=\"m\",le=\"+Inf\"} 4\n" +
			"lat_sum{model_name=\"m\"} 7.65\nlat_count{model_name=\"m\"} 4\n"},
		{"histogram vec", func(r *Registry) {
			h := NewHistogramVec(HistogramOpts{Name: "d", Help: "h", Buckets: []float64{1}}, []string{"k"})
			r.MustRegister(h)
			h.WithLabelValues("a").Observe(2)
		}, "# HELP d h\n# TYPE d histogram\n" +
			"d_bucket{model_name=\"m\",k=\"a\",le=\"1\"} 0\nd_bucket{model_name=\"m\",k=\"a\",le=\"+Inf\"} 1\n" +
			"d_sum{model_name=\"m\",k=\"a\"} 2\nd_count{model_name=\"m\",k=\"a\"} 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry(Labels{"model_name": "m"})
			tt.build(r)
			var b strings.Builder
			if err := WriteText(&b, r); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

// Two registries (two served models) share one HELP/TYPE per family.
func TestWriteTextMerges(t *testing.T) {
	var regs []*Registry
	for _, m := range []string{"b", "a"} {
		r := NewRegistry(Labels{"model_name": m})
		c := NewCounter(CounterOpts{Name: "n_total", Help: "h"})
		r.MustRegister(c)
		c.Inc()
		regs = append(regs, r)
	}
	rec := httptest.NewRecorder()
	Handler(regs...).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := "# HELP n_total h\n# TYPE n_total counter\nn_total{model_name=\"b\"} 1\nn_total{model_name=\"a\"} 1\n"
	if rec.Body.String() != want {
		t.Errorf("got\n%s\nwant\n%s", rec.Body.String(), want)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
}

func TestMisuse(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"duplicate family", func() {
			r := NewRegistry(nil)
			r.MustRegister(NewCounter(CounterOpts{Name: "x"}), NewGauge(GaugeOpts{Name: "x"}))
		}},
		{"wrong label count", func() { NewCounterVec(CounterOpts{Name: "x"}, []string{"a"}).WithLabelValues("1", "2") }},
		{"counter down", func() { NewCounter(CounterOpts{Name: "x"}).Add(-1) }},
		{"buckets out of order", func() { NewHistogram(HistogramOpts{Name: "x", Buckets: []float64{2, 1}}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.f()
		})
	}
}

func TestConcurrentCounts(t *testing.T) {
	c := NewCounter(CounterOpts{Name: "c"})
	h := NewHistogram(HistogramOpts{Name: "h"})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.Inc()
				h.Observe(0.01)
			}
		}()
	}
	wg.Wait()
	if n, _ := h.Count(); c.Value() != 8000 || n != 8000 {
		t.Errorf("counter %v, histogram %d, want 8000", c.Value(), n)
	}
}

func TestRuntimeCollectors(t *testing.T) {
	r := NewRegistry(nil)
	r.MustRegister(NewGoCollector(), NewProcessCollector())
	var b strings.Builder
	WriteText(&b, r)
	for _, name := range []string{"go_goroutines ", "go_memstats_alloc_bytes ", "go_info{version=\"go"} {
		if !strings.Contains(b.String(), name) {
			t.Errorf("missing %q in\n%s", name, b.String())
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil && !strings.Contains(b.String(), "process_resident_memory_bytes ") {
		t.Errorf("no process_resident_memory_bytes on a system with /proc")
	}
}

// TestDescribeMatchesCollect: every collector names exactly the families
// it writes (the duplicate check relies on it), and registering reads no
// value.
func TestDescribeMatchesCollect(t *testing.T) {
	read := false
	cs := []Collector{
		NewCounter(CounterOpts{Name: "c"}), NewGauge(GaugeOpts{Name: "g"}), NewHistogram(HistogramOpts{Name: "h"}),
		NewCounterVec(CounterOpts{Name: "cv"}, []string{"a"}), NewGaugeVec(GaugeOpts{Name: "gv"}, []string{"a"}),
		NewHistogramVec(HistogramOpts{Name: "hv"}, []string{"a"}),
		NewGaugeFunc(GaugeOpts{Name: "gf"}, func() float64 { read = true; return 1 }),
		NewGoCollector(), NewProcessCollector(),
	}
	NewRegistry(nil).MustRegister(cs...)
	if read {
		t.Error("MustRegister read a gauge function's value")
	}
	for _, c := range cs {
		var fams []family
		c.collect(&fams)
		names := map[string]bool{}
		for _, n := range c.describe() {
			names[n] = true
		}
		for _, f := range fams {
			if !names[f.name] {
				t.Errorf("%T writes %s but does not describe it", c, f.name)
			}
		}
	}
}

func TestCollectorFunc(t *testing.T) {
	r := NewRegistry(nil)
	r.MustRegister(NewCollectorFunc([]Desc{{Name: "hits_total", Help: "h", Type: "counter", Labels: []string{"cat", "tier"}}, {Name: "entries", Help: "e", Type: "gauge", Labels: []string{"cat"}}},
		func(emit func(string, float64, ...string)) {
			emit("hits_total", 2, "math", "exact")
			emit("hits_total", 1, "code", "semantic")
			emit("entries", 7, "code")
		}))
	var b strings.Builder
	WriteText(&b, r)
	want := "# HELP entries e\n# TYPE entries gauge\nentries{cat=\"code\"} 7\n" +
		"# HELP hits_total h\n# TYPE hits_total counter\nhits_total{cat=\"code\",tier=\"semantic\"} 1\nhits_total{cat=\"math\",tier=\"exact\"} 2\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
