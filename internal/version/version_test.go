package version

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name             string
		ldVersion, ldRev string
		bi               *debug.BuildInfo
		want             Info
	}{
		{
			name:      "ldflags win",
			ldVersion: "v0.1.0-3-g1e5d411", ldRev: "1e5d4110c0ff",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203091021-aaaaaaaaaaaa"}, Settings: vcs("aaaaaaaaaaaaaaaa", "true")},
			want: Info{Version: "v0.1.0-3-g1e5d411", Commit: "1e5d4110c0ff"},
		},
		{
			name: "build info of a clean checkout",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203091021-1e5d4110c0ff"}, Settings: vcs("1e5d4110c0ffee1e5d4110c0ffee1e5d4110c0ff", "false")},
			want: Info{Version: "v0.0.0-20261203091021-1e5d4110c0ff", Commit: "1e5d4110c0ff"},
		},
		{
			name: "build info of a modified tree",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203091021-1e5d4110c0ff+dirty"}, Settings: vcs("1e5d4110c0ffee", "true")},
			want: Info{Version: "v0.0.0-20261203091021-1e5d4110c0ff+dirty", Commit: "1e5d4110c0ff-dirty"},
		},
		{
			name: "built with -buildvcs=false",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: Info{Version: "devel", Commit: Unknown},
		},
		{
			name:      "only the version from ldflags",
			ldVersion: "v0.2.0",
			bi:        &debug.BuildInfo{Settings: vcs("1e5d4110c0ff", "false")},
			want:      Info{Version: "v0.2.0", Commit: "1e5d4110c0ff"},
		},
		{
			name: "no build info",
			want: Info{Version: "devel", Commit: Unknown},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := func() (*debug.BuildInfo, bool) { return tt.bi, tt.bi != nil }
			if diff := cmp.Diff(tt.want, resolve(tt.ldVersion, tt.ldRev, read)); diff != "" {
				t.Errorf("resolve (-want +got):\n%s", diff)
			}
		})
	}
}

func TestString(t *testing.T) {
	got := Info{Version: "v0.1.0", Commit: "1e5d4110c0ff"}.String("berth-speaker")
	if want := "berth-speaker version v0.1.0 commit 1e5d4110c0ff (go"; !strings.HasPrefix(got, want) {
		t.Errorf("String = %q, want prefix %q", got, want)
	}
}
