package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time, for example:
//
//	-ldflags "-X github.com/berthlb/berth/internal/version.version=v0.1.0
//	          -X github.com/berthlb/berth/internal/version.commit=1e5d4110c0ff"
//
// They are the package's only variables and nothing assigns them at run time.
var (
	version string
	commit  string
)

// Unknown fills a field that neither the linker nor the build information
// provided.
const Unknown = "unknown"

// Info is a binary's version and commit.
type Info struct {
	// Version is `git describe` output (v0.1.0, v0.1.0-3-g1e5d411), the Go
	// module version, or "devel".
	Version string
	// Commit is the git revision, with "-dirty" when the tree had changes.
	Commit string
}

// Get returns this binary's Info.
func Get() Info {
	return resolve(version, commit, debug.ReadBuildInfo)
}

// String formats Info as the --version line of the command name.
func (i Info) String(name string) string {
	return fmt.Sprintf("%s version %s commit %s (%s %s/%s)", name, i.Version, i.Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// resolve prefers the link-time values and falls back, field by field, to
// the build information that `go build` records (the module version, and
// vcs.revision and vcs.modified unless built with -buildvcs=false).
func resolve(ldVersion, ldCommit string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: ldVersion, Commit: ldCommit}
	bi, ok := read()
	if info.Version == "" {
		info.Version = "devel"
		if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
	}
	if info.Commit == "" {
		info.Commit = Unknown
		if ok {
			info.Commit = vcsCommit(bi.Settings)
		}
	}
	return info
}

// vcsCommit is the revision from the vcs.* build settings, shortened as
// git shortens it, with "-dirty" for a modified tree.
func vcsCommit(settings []debug.BuildSetting) string {
	rev, dirty := "", false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return Unknown
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
