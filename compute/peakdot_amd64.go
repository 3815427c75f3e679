//go:build amd64 && !purego

package compute

import "golang.org/x/sys/cpu"

//go:noescape
func bf16DotChainsAVX512(iters int) float32

//go:noescape
func int8DotChainsAVX512(iters int) int32

// dotProbes runs sixteen chains of 512-bit dot-product instructions: more
// than latency × throughput of either instruction on current cores.
var dotProbes = func() dotPeakProbes {
	var p dotPeakProbes
	if !hasAVX512() {
		return p
	}
	if cpu.X86.HasAVX512BF16 {
		// 16 chains × 32 bf16 pairs × (multiply + add).
		p.bf16, p.bf16PerIter = bf16DotChainsAVX512, 16*32*2
	}
	if cpu.X86.HasAVX512VNNI {
		// 16 chains × 64 byte products × (multiply + add).
		p.int8, p.int8PerIter = int8DotChainsAVX512, 16*64*2
	}
	return p
}()
