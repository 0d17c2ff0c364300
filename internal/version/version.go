// Package version reports what binary this is.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set at build time with -ldflags "-X …/internal/version.Version=v0.1.0".
var (
	Version = "dev"
	Commit  = ""
)

// Info is the version, commit and Go version of the running binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Get returns the build's Info, falling back to the VCS stamp Go records
// when no commit was given at link time.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && i.Commit == "" {
				i.Commit = s.Value
			}
		}
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	return i
}
