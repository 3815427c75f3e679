package compute

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

func threadCPU() time.Duration {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

// cpuBest returns the best per-op CPU time over trials of n ops.
func cpuBest(f func(), n, trials int) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := time.Duration(1 << 62)
	for range trials {
		t0 := threadCPU()
		for range n {
			f()
		}
		if d := (threadCPU() - t0) / time.Duration(n); d < best && d > 0 {
			best = d
		}
	}
	return best
}

func TestZZCPU(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	rng := rand.New(rand.NewPCG(55, 56))
	const d, rows = 64, 2048
	k, v := randF32(rng, rows*d), randF32(rng, rows*d)
	kb, vb := randBF16(rng, rows*d), randBF16(rng, rows*d)
	q := randF32(rng, 48*d)
	s, out := make([]float32, 48*rows), make([]float32, 48*d)
	src := randF32(rng, 4096)
	ks := bestKernels()
	for _, c := range []struct {
		name string
		fl   float64
		f    func()
	}{
		{"exp4096 (Gelem/s)", 4096, func() { ks.expSum(s[:4096], src, 0) }},
		{"scores", 2 * rows * d, func() { ks.scores(s[:rows], q[:d], k, 0.125) }},
		{"scoresBF16", 2 * rows * d, func() { ks.scoresBF16(s[:rows], q[:d], kb, 0.125) }},
		{"scoresMulti3", 3 * 2 * rows * d, func() { ks.scoresMulti(s, rows, q, 3, d, k, rows, 0.125) }},
		{"scoresMulti48", 48 * 2 * rows * d, func() { ks.scoresMulti(s, rows, q, 48, d, k, rows, 0.125) }},
		{"mixRows", 2 * rows * d, func() { ks.mixRows(out[:d], s[:rows], v) }},
		{"mixRowsBF16", 2 * rows * d, func() { ks.mixRowsBF16(out[:d], s[:rows], vb) }},
		{"mixRowsMulti3", 3 * 2 * rows * d, func() { ks.mixRowsMulti(out, d, s, rows, 3, d, v, rows) }},
		{"mixRowsMulti48", 48 * 2 * rows * d, func() { ks.mixRowsMulti(out, d, s, rows, 48, d, v, rows) }},
	} {
		n := max(1, int(2e7/c.fl))
		best := cpuBest(c.f, n, 15)
		fmt.Printf("%-20s %8.2f GFLOP/s (cpu %v)\n", c.name, c.fl/best.Seconds()/1e9, best)
	}
}
