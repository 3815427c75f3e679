package metric

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// goCollector writes the Go runtime's usual series (names as client_golang
// writes them).
type goCollector struct{}

// NewGoCollector returns a collector of go_goroutines, go_info and the
// main go_memstats_* series.
func NewGoCollector() Collector { return goCollector{} }

func (goCollector) describe() []string {
	return []string{"go_goroutines", "go_info", "go_memstats_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_released_bytes",
		"go_memstats_sys_bytes", "go_memstats_mallocs_total", "go_gc_cycles_total", "go_gc_pause_seconds_total"}
}

func (goCollector) collect(out *[]family) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	one := func(name, help, typ string, v float64) {
		*out = append(*out, family{name, help, typ, []sample{{value: v}}})
	}
	one("go_goroutines", "Number of goroutines that currently exist.", "gauge", float64(runtime.NumGoroutine()))
	*out = append(*out, family{"go_info", "Information about the Go environment.", "gauge",
		[]sample{{labels: []labelPair{{"version", runtime.Version()}}, value: 1}}})
	one("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", "gauge", float64(ms.HeapAlloc))
	one("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", "gauge", float64(ms.HeapInuse))
	one("go_memstats_heap_released_bytes", "Number of heap bytes released to the OS.", "gauge", float64(ms.HeapReleased))
	one("go_memstats_sys_bytes", "Number of bytes obtained from the system.", "gauge", float64(ms.Sys))
	one("go_memstats_mallocs_total", "Total number of heap objects allocated.", "counter", float64(ms.Mallocs))
	one("go_gc_cycles_total", "Completed GC cycles.", "counter", float64(ms.NumGC))
	one("go_gc_pause_seconds_total", "Total time the GC stopped the world.", "counter", float64(ms.PauseTotalNs)/1e9)
}

// processCollector writes the process's usual series from /proc (Linux);
// elsewhere it writes none.
type processCollector struct{ start time.Time }

// NewProcessCollector returns a collector of process_resident_memory_bytes,
// process_virtual_memory_bytes, process_cpu_seconds_total,
// process_open_fds and process_start_time_seconds (the time this collector
// was made, which a server does as it starts).
func NewProcessCollector() Collector { return processCollector{time.Now()} }

func (processCollector) describe() []string {
	return []string{"process_cpu_seconds_total", "process_virtual_memory_bytes", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"}
}

func (p processCollector) collect(out *[]family) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 22 {
		return
	}
	num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
	const ticks = 100 // USER_HZ on every Linux Go supports
	one := func(name, help, typ string, v float64) {
		*out = append(*out, family{name, help, typ, []sample{{value: v}}})
	}
	// f[0] is field 3 (state): utime is field 14, stime 15, vsize 23, rss 24.
	one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", (num(11)+num(12))/ticks)
	one("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", num(20))
	one("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", num(21)*float64(os.Getpagesize()))
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		one("process_open_fds", "Number of open file descriptors.", "gauge", float64(len(fds)))
	}
	one("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.", "gauge", float64(p.start.UnixNano())/1e9)
}
