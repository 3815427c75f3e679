package compute

import (
	"runtime"
	"sync"
)

// Pool is a fixed set of worker goroutines that split loops between them.
// Workers live as long as the pool, so a parallel loop costs a few channel
// operations, not goroutine starts. A Pool runs one loop at a time; its
// methods are safe for concurrent use but calls are serialized.
type Pool struct {
	mu      sync.Mutex
	threads int
	work    []chan task
	done    sync.WaitGroup
	scratch [][]float32
}

type task struct {
	fn     func(worker, lo, hi int)
	worker int
	lo, hi int
}

// NewPool starts a pool of the given number of threads; threads ≤ 0 means
// one per CPU.
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Pool{threads: threads, scratch: make([][]float32, threads)}
	p.work = make([]chan task, threads-1)
	for i := range p.work {
		ch := make(chan task, 1)
		p.work[i] = ch
		go func() {
			for t := range ch {
				t.fn(t.worker, t.lo, t.hi)
				p.done.Done()
			}
		}()
	}
	return p
}

// Threads returns the number of threads, the caller's included.
func (p *Pool) Threads() int { return p.threads }

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ch := range p.work {
		close(ch)
	}
	p.work = nil
}

// For runs fn over [0, n) split into at most Threads contiguous ranges of
// at least grain items each, and returns when all are done. worker is the
// index of the thread running the range, in [0, Threads), so fn may use
// per-worker scratch space.
func (p *Pool) For(n, grain int, fn func(worker, lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := min(p.threads, (n+grain-1)/grain)
	if parts <= 1 {
		p.mu.Lock()
		fn(0, 0, n)
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done.Add(parts - 1)
	for i := 1; i < parts; i++ {
		p.work[i-1] <- task{fn: fn, worker: i, lo: i * n / parts, hi: (i + 1) * n / parts}
	}
	fn(0, 0, n/parts)
	p.done.Wait()
}

// Scratch returns worker w's scratch buffer of at least n floats. It is only
// valid inside a For callback running as that worker.
func (p *Pool) Scratch(w, n int) []float32 {
	if cap(p.scratch[w]) < n {
		p.scratch[w] = make([]float32, n)
	}
	return p.scratch[w][:n]
}
