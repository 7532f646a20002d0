// Package buildinfo says which build of diarysync a binary is: the
// module version and the version-control revision the Go toolchain
// stamped into it.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what a binary knows of its own build.
type Info struct {
	Module   string `json:"module"`
	Version  string `json:"version"`  // the module version, "(devel)" for a build from a checkout without one
	Revision string `json:"revision"` // the VCS revision, "" when not stamped (go run, go test)
	Time     string `json:"time"`     // the revision's commit time
	Modified bool   `json:"modified"` // the working tree had changes not committed
	Go       string `json:"go"`
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Go: runtime.Version(), Version: "(unknown)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Module, info.Version = bi.Main.Path, bi.Main.Version
	if info.Version == "" {
		info.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String formats the information for a person, as "diary v1.2.0
// (revision 3f2c…, 2026-03-02T09:00:00Z) go1.26.0".
func (i Info) String(program string) string {
	rev := "revision unknown: built without version control information"
	if i.Revision != "" {
		rev = "revision " + i.Revision
		if i.Time != "" {
			rev += ", " + i.Time
		}
		if i.Modified {
			rev += ", with uncommitted changes"
		}
	}
	return fmt.Sprintf("%s %s (%s) %s", program, i.Version, rev, i.Go)
}
