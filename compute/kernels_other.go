//go:build !amd64 || purego

package compute

func bestKernels() kernelSet { return generic }

// simdSets lists the SIMD kernel sets this CPU can run, for tests.
func simdSets() []kernelSet { return nil }
