package hostdeps

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

//go:embed packages.txt
var list string

// Package is one Debian package of the list.
type Package struct {
	Name string
	// Uses are who needs it: "test", "demo".
	Uses []string
	// Commands are the programs it provides that Berth runs: names looked
	// up in PATH, or absolute paths.
	Commands []string
}

// Packages returns the list, parsed.
func Packages() []Package {
	pkgs, err := parse(list)
	if err != nil {
		panic("hostdeps: packages.txt: " + err.Error()) // the embedded list is tested
	}
	return pkgs
}

func parse(s string) ([]Package, error) {
	var pkgs []Package
	sc := bufio.NewScanner(strings.NewReader(s))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 {
			return nil, fmt.Errorf("line %d: want a package, its uses and at least one command", n)
		}
		pkgs = append(pkgs, Package{Name: f[0], Uses: strings.Split(f[1], ","), Commands: f[2:]})
	}
	return pkgs, sc.Err()
}

// notFound reports whether command is not installed.
func notFound(command string) bool {
	var err error
	if strings.HasPrefix(command, "/") {
		_, err = os.Stat(command)
	} else {
		_, err = exec.LookPath(command)
	}
	return err != nil
}

// Missing returns the packages that use needs and of which a command is
// not installed.
func Missing(use string) []Package {
	var missing []Package
	for _, p := range Packages() {
		if slices.Contains(p.Uses, use) && slices.ContainsFunc(p.Commands, notFound) {
			missing = append(missing, p)
		}
	}
	return missing
}

// PackageOf returns the package that provides command, or "" if the list
// does not have it.
func PackageOf(command string) string {
	for _, p := range Packages() {
		if slices.Contains(p.Commands, command) {
			return p.Name
		}
	}
	return ""
}

// Skip skips tb with the message, or fails it under CI=true: CI runs as
// root with every package installed, so a test that would skip there has
// lost its coverage silently (the suite runs without -v).
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("CI=true, and this test would skip: "+format, args...)
		return
	}
	tb.Skipf(format, args...)
}

// Require skips tb (fails it under CI=true, see Skip), naming the Debian
// package to install, unless every command is installed. A command the list does not have fails tb: add it
// to packages.txt.
func Require(tb testing.TB, commands ...string) {
	tb.Helper()
	for _, c := range commands {
		pkg := PackageOf(c)
		if pkg == "" {
			tb.Fatalf("hostdeps: %s is not in internal/hostdeps/packages.txt; add the package that provides it", c)
		}
		if notFound(c) {
			Skip(tb, "skipping: %s not found; install the Debian package %s (`make test` as root installs it, or hack/install-deps.sh test)", c, pkg)
		}
	}
}

// Install installs pkgs with apt-get after saying so on out; it is for
// root on Debian and Ubuntu.
func Install(ctx context.Context, out io.Writer, why string, pkgs []Package) error {
	if len(pkgs) == 0 {
		return nil
	}
	names := make([]string, len(pkgs))
	for i, p := range pkgs {
		names[i] = p.Name
	}
	fmt.Fprintf(out, "==> %s needs the Debian packages %s; installing them with apt-get\n", why, strings.Join(names, " "))
	for _, argv := range [][]string{
		{"apt-get", "update", "-qq"},
		append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, names...),
	} {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, o)
		}
	}
	return nil
}
