package compute

// Dot-product peak probes for `kvserve bench perf`: register-only loops of
// the instructions the Fast numerics run on (see Numerics), VDPBF16PS for
// bfloat16 weights and VPDPBUSD for the int8 kernels. Where the CPU lacks
// the instruction the ops-per-iteration functions return 0 and the probes
// do nothing.

// PeakBF16DotFlopsPerIter is the floating-point operations one iteration
// of PeakBF16Dot performs (each bf16 product and each addition counts
// one), or 0 where the CPU has no AVX512_BF16.
func PeakBF16DotFlopsPerIter() int { return dotProbes.bf16PerIter }

// PeakBF16Dot runs iters iterations of independent VDPBF16PS chains held
// in registers, PeakBF16DotFlopsPerIter flops each, and returns a value
// derived from the chains so the work cannot be skipped. Each chain lane
// gains 2^-19 per iteration, so for small iters the result is exactly
// 16·iters·2^-19 (one lane of each of the 16 chains).
func PeakBF16Dot(iters int) float32 {
	if iters <= 0 || dotProbes.bf16 == nil {
		return 0
	}
	return dotProbes.bf16(iters)
}

// PeakInt8DotOpsPerIter is the integer operations one iteration of
// PeakInt8Dot performs (each 8-bit product and each addition counts one),
// or 0 where the CPU has no AVX512_VNNI.
func PeakInt8DotOpsPerIter() int { return dotProbes.int8PerIter }

// PeakInt8Dot runs iters iterations of independent VPDPBUSD chains held in
// registers, PeakInt8DotOpsPerIter operations each, and returns a value
// derived from the chains: one lane of each of the 16 chains, each lane
// gaining 4·1·2 = 8 per iteration, so 128·iters (mod 2^32).
func PeakInt8Dot(iters int) int32 {
	if iters <= 0 || dotProbes.int8 == nil {
		return 0
	}
	return dotProbes.int8(iters)
}

// dotPeakProbes is the set of dot-product probes this CPU runs.
type dotPeakProbes struct {
	bf16PerIter, int8PerIter int
	bf16                     func(iters int) float32
	int8                     func(iters int) int32
}
