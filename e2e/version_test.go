package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/berthlb/berth/e2e/controlplane"
)

// commands are Berth's binaries; each must answer --version.
var commands = []string{"berth-controller", "berth-speaker", "berth-ccm", "berth-demo", "berth"}

// TestVersion builds every command the way the Makefile does, with the
// version and commit set by -ldflags -X, and checks that --version prints
// them and exits 0 without starting anything (no kubeconfig is given, so a
// command that ran would fail). A plain build answers too, with what the
// toolchain recorded or "devel".
func TestVersion(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const pkg = "github.com/berthlb/berth/internal/version"
	ldflags := "-X " + pkg + ".version=v9.8.7-test -X " + pkg + ".commit=0123456789ab"
	build := exec.Command("go", "build", "-ldflags", ldflags, "-o", dir+"/", "./cmd/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, name := range commands {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(filepath.Join(dir, name), "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s --version: %v\n%s", name, err, out)
			}
			want := name + " version v9.8.7-test commit 0123456789ab (go"
			if !strings.HasPrefix(string(out), want) || strings.Count(string(out), "\n") != 1 {
				t.Errorf("%s --version printed %q, want one line starting %q", name, out, want)
			}

			plain := regexp.MustCompile(`^` + name + ` version \S+ commit \S+ \(go\S+ linux/\w+\)\n$`)
			out, err = exec.Command(berthBins.path(t, name), "--version").CombinedOutput()
			if err != nil || !plain.Match(out) {
				t.Errorf("plain build: %s --version: %v, printed %q, want a match of %s", name, err, out, plain)
			}
		})
	}
}
