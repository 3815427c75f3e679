package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line bar with an ETA on a terminal stream.
type progress struct {
	w     io.Writer
	total int
	n     int
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, total: total, start: time.Now()}
}

func (p *progress) step(correct int) {
	p.n++
	if p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond && p.n < p.total {
		return
	}
	p.last = now
	const width = 30
	filled := width * p.n / max(1, p.total)
	elapsed := now.Sub(p.start)
	eta := time.Duration(0)
	if p.n > 0 {
		eta = elapsed * time.Duration(p.total-p.n) / time.Duration(p.n)
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d  correct %d  elapsed %s  eta %s ",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.n, p.total, correct,
		elapsed.Round(time.Second), eta.Round(time.Second))
}

func (p *progress) done() {
	if p.w != nil && p.total > 0 {
		fmt.Fprintln(p.w)
	}
}
