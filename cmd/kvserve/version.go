package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/kvserve/kvserve/compute"
)

// version describes this build: the module version or the commit it was
// built from (with "+dirty" for uncommitted changes), its time, the Go
// version, the platform and the kernel set chosen for this CPU.
func version() string {
	rev, when, dirty := "unknown", "", false
	mod := "(devel)"
	if info, ok := debug.ReadBuildInfo(); ok {
		mod = info.Main.Version
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		rev += "+dirty"
	}
	s := fmt.Sprintf("kvserve %s (commit %s", mod, rev)
	if when != "" {
		s += ", " + when
	}
	return s + fmt.Sprintf(") %s %s/%s, kernels %s", runtime.Version(), runtime.GOOS, runtime.GOARCH, compute.KernelName())
}

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", "Prints the build's version, commit, Go version, platform and the\nkernel set chosen for this CPU.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, version())
	return nil
}
