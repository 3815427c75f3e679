package compute

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a fixed set of worker goroutines that split loops between them.
// Workers live as long as the pool. Handing a range to a worker costs a few
// atomic operations: an idle worker spins for a short while (spinWait)
// waiting for the next loop before it parks on a channel, so back-to-back
// loops, as in decoding, never wait for the scheduler to wake a thread.
// A Pool runs one loop at a time; its methods are safe for concurrent use
// but calls are serialized.
type Pool struct {
	mu      sync.Mutex
	threads int
	workers []poolWorker // workers[i] runs ranges for worker index i+1
	pending atomic.Int32 // workers still running the current loop
	caller  parker       // the goroutine waiting in For for pending to reach 0
	closed  atomic.Bool
	scratch [][]float32

	mm    matMulJob                // MatMul's arguments, so it needs no closure
	mmRun func(worker, lo, hi int) // p.runMatMul, bound once

	numerics Numerics
	qa       qact                     // Fast MatMul's int8 activations
	xb       []uint16                 // Fast MatMul's bfloat16 activations
	roundRun func(worker, lo, hi int) // p.roundActs, bound once
	fastRun  func(worker, lo, hi int) // p.runFast, bound once
	done     func() bool              // p.pendingDone, bound once
}

// spinWait is how long an idle worker, or For waiting for its workers, spins
// before parking. Parking and waking a thread costs tens of microseconds on
// some systems, more than a whole decode-sized MatMul.
const spinWait = 50 * time.Microsecond

// parker lets one goroutine wait for a condition, spinning first and then
// blocking on a channel until whoever makes the condition true wakes it.
type parker struct {
	sleeping atomic.Bool
	wake     chan struct{} // capacity 1
}

// unpark wakes the parker's goroutine if it is blocked or about to block.
// Call it after making the awaited condition true.
func (k *parker) unpark() {
	if k.sleeping.Swap(false) {
		k.wake <- struct{}{}
	}
}

// await returns once ready reports true. ready is checked before and after
// the goroutine announces that it is going to sleep, so an unpark issued
// after the condition became true is never missed.
func (k *parker) await(ready func() bool) {
	if ready() {
		return
	}
	for {
		var start time.Time
		for spins := 1; ; spins++ {
			if ready() {
				return
			}
			if spins%64 == 0 {
				if spins == 64 {
					start = time.Now()
				} else if time.Since(start) > spinWait {
					break
				}
				runtime.Gosched()
			}
		}
		k.sleeping.Store(true)
		if ready() {
			if !k.sleeping.Swap(false) {
				<-k.wake // an unpark raced us and sent a token: take it
			}
			return
		}
		<-k.wake
	}
}

// poolWorker is one worker's mailbox, padded to keep workers' hot fields on
// separate cache lines.
type poolWorker struct {
	seq    atomic.Uint32 // bumped by For for each range handed over
	fn     func(worker, lo, hi int)
	lo, hi int
	park   parker
	_      [64]byte
}

// NewPool starts a pool of the given number of threads; threads ≤ 0 means
// one per CPU.
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Pool{threads: threads, scratch: make([][]float32, threads)}
	p.caller.wake = make(chan struct{}, 1)
	p.mmRun = p.runMatMul
	p.roundRun, p.fastRun = p.roundActs, p.runFast
	p.done = p.pendingDone
	p.workers = make([]poolWorker, threads-1)
	for i := range p.workers {
		p.workers[i].park.wake = make(chan struct{}, 1)
		go p.work(i + 1)
	}
	return p
}

func (p *Pool) work(worker int) {
	w := &p.workers[worker-1]
	var seen uint32
	ready := func() bool { return w.seq.Load() != seen }
	for {
		w.park.await(ready)
		seen = w.seq.Load()
		if p.closed.Load() {
			return
		}
		w.fn(worker, w.lo, w.hi)
		if p.pending.Add(-1) == 0 {
			p.caller.unpark()
		}
	}
}

// Threads returns the number of threads, the caller's included.
func (p *Pool) Threads() int { return p.threads }

// Close stops the workers. The pool must not be used afterwards.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Swap(true) {
		return
	}
	for i := range p.workers {
		w := &p.workers[i]
		w.seq.Add(1)
		w.park.unpark()
	}
}

// For runs fn over [0, n) split into at most Threads contiguous ranges of
// at least grain items each, and returns when all are done. worker is the
// index of the thread running the range, in [0, Threads), so fn may use
// per-worker scratch space. For itself allocates nothing, though a closure
// passed as fn that captures variables is allocated by its caller.
func (p *Pool) For(n, grain int, fn func(worker, lo, hi int)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forLocked(n, grain, fn)
}

// pendingDone reports whether every worker has finished the current loop.
func (p *Pool) pendingDone() bool { return p.pending.Load() == 0 }

func (p *Pool) forLocked(n, grain int, fn func(worker, lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := min(p.threads, (n+grain-1)/grain)
	if parts <= 1 {
		fn(0, 0, n)
		return
	}
	p.pending.Store(int32(parts - 1))
	for i := 1; i < parts; i++ {
		w := &p.workers[i-1]
		w.fn, w.lo, w.hi = fn, i*n/parts, (i+1)*n/parts
		w.seq.Add(1)
		w.park.unpark()
	}
	fn(0, 0, n/parts)
	p.caller.await(p.done)
	for i := 1; i < parts; i++ {
		p.workers[i-1].fn = nil // let the closure go
	}
}

// Scratch returns worker w's scratch buffer of at least n floats. It is only
// valid inside a For callback running as that worker.
func (p *Pool) Scratch(w, n int) []float32 {
	if cap(p.scratch[w]) < n {
		p.scratch[w] = make([]float32, n)
	}
	return p.scratch[w][:n]
}
