//go:build !amd64 || purego

package compute

var dotProbes dotPeakProbes
