//go:build amd64 && !purego

package compute

import (
	"os"

	"golang.org/x/sys/cpu"
)

// The AVX-512 set is the AVX2 set with 16-float matrix kernels: the GEMM
// tile (4 weight rows × 4 tokens) and the bf16 GEMV of decode steps. The
// other kernels (attention, exp) stay AVX2: their rows are 64 or 128
// floats, where wider registers buy little. It needs AVX512F and
// AVX512BW (VPMOVZXWD on 512-bit registers); NoAVX512Env turns it off.

// NoAVX512Env, set to 1, keeps the AVX2 kernels on a CPU with AVX-512 (to
// compare the two, or where 512-bit code lowers the clock).
const NoAVX512Env = "KVSERVE_NO_AVX512"

//go:noescape
func gemm4x4TileAVX512(y *float32, ldy int, w *float32, ldw int, x *float32, ldx, k, ntok int)

//go:noescape
func dotBF16RowsAVX512(d *float32, w *uint16, ldw int, x *float32, k, rows int)

// hasAVX512 reports whether the avx512 set runs here.
func hasAVX512() bool {
	return hasAVX2() && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
}

// avx512Wanted reports whether the avx512 set should be the default.
func avx512Wanted() bool { return hasAVX512() && os.Getenv(NoAVX512Env) != "1" }

func avx512Set() kernelSet {
	ks := avx2
	ks.name = "avx512"
	ks.gemm, ks.gemmR, ks.gemmT = gemm4x4TileAVX512Go, 4, 4
	ks.dotBF16 = dotBF16RowsAVX512Go
	if hasVNNI() {
		useVNNI(&ks)
		ks.matQ4_K, ks.matQ6_K = matQ4KAVX512, matQ6KAVX512
	}
	ks.f32ToBF16 = f32ToBF16AVX512Go
	if cpu.X86.HasAVX512BF16 {
		ks.matBF16Fast = matBF16FastAVX512
	}
	return ks
}

func gemm4x4TileAVX512Go(y []float32, ldy int, w []float32, ldw int, x []float32, ldx, k, ntok int) {
	if ntok <= 0 {
		return
	}
	// Bounds of everything read and written; k ≥ 1.
	_, _, _ = y[(ntok-1)*ldy+3], w[3*ldw+k-1], x[(ntok-1)*ldx+k-1]
	m := k &^ 15
	gemm4x4TileAVX512(&y[0], ldy, &w[0], ldw, &x[0], ldx, m, ntok&^3)
	gemmTail(y, ldy, w, ldw, x, ldx, m, k, ntok, 4)
}

func dotBF16RowsAVX512Go(d []float32, w []uint16, ldw int, x []float32, k int) {
	rows := len(d)
	if rows == 0 {
		return
	}
	_, _ = w[(rows-1)*ldw+k-1], x[k-1] // bounds; k ≥ 1
	m := k &^ 15
	dotBF16RowsAVX512(&d[0], &w[0], ldw, &x[0], m, rows)
	dotBF16Tail(d, w, ldw, x, m, k)
}
