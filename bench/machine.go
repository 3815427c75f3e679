package bench

import (
	"bufio"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/kvserve/kvserve/compute"
)

// Machine is the machine's peaks from built-in micro-benchmarks: the
// roofline that perf numbers are read against.
type Machine struct {
	FMAGFLOPsPerCore float64 `json:"fma_gflops_per_core"`
	FMAGFLOPs        float64 `json:"fma_gflops"`
	ReadGBsPerCore   float64 `json:"read_gbs_per_core"`
	ReadGBs          float64 `json:"read_gbs"`
	Threads          int     `json:"threads"`
	CPU              string  `json:"cpu"`

	// BF16DotGFLOPs and Int8DotGOPs are the all-thread peaks of the Fast
	// numerics' dot-product instructions (VDPBF16PS, VPDPBUSD; a product
	// and an addition count two operations), 0 where the CPU lacks them.
	BF16DotGFLOPs float64 `json:"bf16_dot_gflops,omitempty"`
	Int8DotGOPs   float64 `json:"int8_dot_gops,omitempty"`
}

// machineReadBytes is the buffer the bandwidth probe streams through, far
// larger than any cache.
const machineReadBytes = 256 << 20

// MeasureMachine measures fp32 FMA throughput (register-only FMA chains)
// and memory read bandwidth (a streaming sum over a 256 MB buffer), on one
// thread and on threads at once, and the bf16 and int8 dot-product peaks
// on threads at once where the CPU has those instructions. It takes about
// a second.
func MeasureMachine(threads int) Machine {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	m := Machine{Threads: threads, CPU: cpuModel()}
	m.FMAGFLOPsPerCore = fmaGFLOPs(1)
	m.FMAGFLOPs = fmaGFLOPs(threads)
	if n := compute.PeakBF16DotFlopsPerIter(); n > 0 {
		m.BF16DotGFLOPs = peakGOPs(threads, n, func(iters int) float32 { return compute.PeakBF16Dot(iters) })
	}
	if n := compute.PeakInt8DotOpsPerIter(); n > 0 {
		m.Int8DotGOPs = peakGOPs(threads, n, func(iters int) float32 { return float32(compute.PeakInt8Dot(iters)) })
	}
	buf := make([]float32, machineReadBytes/4)
	for i := range buf {
		buf[i] = 1
	}
	m.ReadGBsPerCore = readGBs(buf, 1)
	m.ReadGBs = readGBs(buf, threads)
	return m
}

// parallel runs fn(i) on n goroutines locked to their threads at once and
// returns the wall time of the slowest.
func parallel(n int, fn func(i int)) time.Duration {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			defer done.Done()
			ready.Done()
			<-start
			fn(i)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	return time.Since(t0)
}

var machineSink float32

// fmaGFLOPs returns the best of a few runs of the FMA chains on threads
// threads at once, in total GFLOP/s.
func fmaGFLOPs(threads int) float64 {
	return peakGOPs(threads, compute.PeakFMAFlopsPerIter(), compute.PeakFMA)
}

// peakGOPs returns the best of a few runs of a register-only probe
// (opsPerIter operations per iteration) on threads threads at once, in
// total G op/s.
func peakGOPs(threads, opsPerIter int, probe func(iters int) float32) float64 {
	iters := 1 << 20
	// Calibrate to about 50 ms per run.
	for {
		d := parallel(1, func(int) { machineSink += probe(iters) })
		if d > 20*time.Millisecond || iters > 1<<30 {
			iters = int(float64(iters) * float64(50*time.Millisecond) / float64(d))
			break
		}
		iters *= 4
	}
	sinks := make([]float32, threads)
	best := 0.0
	for range 3 {
		d := parallel(threads, func(i int) { sinks[i] += probe(iters) })
		best = max(best, float64(threads)*float64(iters)*float64(opsPerIter)/d.Seconds()/1e9)
	}
	for _, s := range sinks {
		machineSink += s
	}
	return best
}

// readGBs returns the best of a few streaming sums over buf split between
// threads threads, in total GB/s.
func readGBs(buf []float32, threads int) float64 {
	sinks := make([]float32, threads)
	best := 0.0
	for range 4 {
		d := parallel(threads, func(i int) {
			part := buf[i*len(buf)/threads : (i+1)*len(buf)/threads]
			sinks[i] += compute.PeakRead(part)
		})
		best = max(best, float64(len(buf)*4)/d.Seconds()/1e9)
	}
	for _, s := range sinks {
		machineSink += s
	}
	return best
}

// cpuModel returns the CPU's model name from /proc/cpuinfo, or the
// architecture where that is missing.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}
