package compute

func bestKernels() kernelSet { return generic }
