package compute

// fastRows is how many weight rows a worker hands a Fast-mode kernel at a
// time: small enough that the rows stay in cache while the kernel streams
// every token past them.
const fastRows = 64

// matMulFast is MatMul in Fast numerics: it rounds the activations once
// (int8 blocks or bfloat16, spread over the workers), then splits the
// weight rows across the workers, each running its type's kernel over all
// n tokens. p.mu is held.
func (p *Pool) matMulFast(ks *kernelSet, y, x []float32, n int, w *Mat) {
	cols := w.Cols
	p.mm = matMulJob{ks: ks, y: y, x: x, n: n, w: w, block: fastRows}
	if w.DType == BF16 {
		p.xb = grow(p.xb, n*cols)
	} else {
		p.qa.reset(n, cols)
	}
	p.forLocked(n, max(1, 16384/cols), p.roundRun)
	grain := max(1, 4096/max(1, cols*n)) // rows; keep tiny products on one thread
	p.forLocked((w.Rows+fastRows-1)/fastRows, (grain+fastRows-1)/fastRows, p.fastRun)
	p.mm = matMulJob{}
}

// roundActs rounds activation rows [lo, hi) of the current Fast MatMul.
func (p *Pool) roundActs(_, lo, hi int) {
	j := &p.mm
	cols := j.w.Cols
	if j.w.DType == BF16 {
		j.ks.f32ToBF16(p.xb[lo*cols:hi*cols], j.x[lo*cols:hi*cols])
		return
	}
	j.ks.quantizeAct(&p.qa, j.x, lo, hi)
}

// runFast computes weight-row blocks [blo, bhi) of the current Fast MatMul.
func (p *Pool) runFast(_, blo, bhi int) {
	j := &p.mm
	w := j.w
	rows, cols := w.Rows, w.Cols
	lo, hi := blo*fastRows, min(bhi*fastRows, rows)
	if w.DType == BF16 {
		for r := lo; r < hi; r += fastRows {
			nr := min(fastRows, hi-r)
			j.ks.matBF16Fast(j.y[r:], rows, w.BF16[r*cols:(r+nr)*cols], nr, cols, p.xb, j.n)
		}
		return
	}
	rb := RowBytes(w.DType, cols)
	kern := j.ks.matQ(w.DType)
	blocks := blocksOf(w)
	for r := lo; r < hi; r += fastRows {
		nr := min(fastRows, hi-r)
		kern(j.y[r:], rows, blocks[r*rb:(r+nr)*rb], nr, &p.qa, j.n)
	}
}
