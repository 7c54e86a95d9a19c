package hostdeps

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Package
		wantErr bool
	}{
		{
			name: "comments, blank lines and paths",
			in:   "# header\n\nfrr  test,demo  vtysh /usr/lib/frr/bgpd  # BGP\ncurl test curl\n",
			want: []Package{
				{Name: "frr", Uses: []string{"test", "demo"}, Commands: []string{"vtysh", "/usr/lib/frr/bgpd"}},
				{Name: "curl", Uses: []string{"test"}, Commands: []string{"curl"}},
			},
		},
		{name: "no command", in: "curl test\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parse error %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parse (-want +got):\n%s", diff)
			}
		})
	}
}

// TestList checks the embedded list: it parses, every package is used by
// the tests or the demo, and the programs tests name resolve to the right
// package.
func TestList(t *testing.T) {
	pkgs := Packages()
	if len(pkgs) < 10 {
		t.Fatalf("%d packages, want the 10 or more the tests use", len(pkgs))
	}
	for _, p := range pkgs {
		for _, u := range p.Uses {
			if u != "test" && u != "demo" {
				t.Errorf("%s: unknown use %q", p.Name, u)
			}
		}
	}
	for cmd, want := range map[string]string{"ping": "iputils-ping", "nft": "nftables", "vtysh": "frr", "ip": "iproute2", "ndisc6": "ndisc6", "nope": ""} {
		if got := PackageOf(cmd); got != want {
			t.Errorf("PackageOf(%s) = %q, want %q", cmd, got, want)
		}
	}
	var demo []string
	for _, p := range pkgs {
		for _, u := range p.Uses {
			if u == "demo" {
				demo = append(demo, p.Name)
			}
		}
	}
	if got := strings.Join(demo, " "); got != "iproute2 frr nftables" {
		t.Errorf("demo packages %q, want iproute2 frr nftables", got)
	}
}

// recorder is a testing.TB whose Skipf and Fatalf record and stop.
type recorder struct {
	testing.TB
	skip, fatal string
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
	panic(stop{})
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	panic(stop{})
}

func TestRequire(t *testing.T) {
	t.Setenv("CI", "") // the skip path itself is under test (CI=true turns skips into failures)
	tests := []struct {
		name                string
		path                string // PATH; empty finds nothing
		commands            []string
		wantSkip, wantFatal string // substrings; empty wants none
	}{
		{name: "missing names the package", commands: []string{"ping"}, wantSkip: "install the Debian package iputils-ping"},
		{name: "unknown command", commands: []string{"telnet"}, wantFatal: "not in internal/hostdeps/packages.txt"},
		{name: "found", path: "fake", commands: []string{"nft", "ip"}},
		{name: "path command", commands: []string{"/usr/lib/frr/bgpd"}, wantSkip: "package frr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, c := range []string{"nft", "ip"} {
				if err := os.WriteFile(filepath.Join(dir, c), []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.path == "" {
				dir = t.TempDir()
			}
			t.Setenv("PATH", dir)
			if tt.commands[0] == "/usr/lib/frr/bgpd" && !notFound(tt.commands[0]) {
				t.Skip("FRR is installed here")
			}
			r := &recorder{TB: t}
			func() {
				defer func() {
					if v := recover(); v != nil && v != (stop{}) {
						panic(v)
					}
				}()
				Require(r, tt.commands...)
			}()
			for _, c := range []struct{ got, want string }{{r.skip, tt.wantSkip}, {r.fatal, tt.wantFatal}} {
				if (c.want == "") != (c.got == "") || !strings.Contains(c.got, c.want) {
					t.Errorf("skip %q and fatal %q; want skip containing %q and fatal containing %q", r.skip, r.fatal, tt.wantSkip, tt.wantFatal)
				}
			}
		})
	}
}

// recordingTB records whether a test was skipped or failed.
type recordingTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recordingTB) Helper()               {}
func (r *recordingTB) Skipf(string, ...any)  { r.skipped = true }
func (r *recordingTB) Fatalf(string, ...any) { r.failed = true }

func TestSkipFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci         string
		wantFailed bool
	}{{ci: "", wantFailed: false}, {ci: "true", wantFailed: true}} {
		t.Setenv("CI", tc.ci)
		r := &recordingTB{TB: t}
		Skip(r, "no %s", "root")
		if r.failed != tc.wantFailed || r.skipped == tc.wantFailed {
			t.Errorf("CI=%q: skipped %v, failed %v; want failed %v", tc.ci, r.skipped, r.failed, tc.wantFailed)
		}
	}
}
