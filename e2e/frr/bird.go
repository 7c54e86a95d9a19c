package frr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// RequireBIRD skips tb unless it runs as root with BIRD 2 installed.
func RequireBIRD(tb testing.TB) {
	tb.Helper()
	netlab.RequireRoot(tb)
	hostdeps.Require(tb, "bird", "birdc")
}

// BIRD is a BIRD 2 daemon in its own lab host. Its BGP sessions are
// passive (the speakers dial) and it exports what it learns to the kernel,
// merging equal paths into ECMP routes.
type BIRD struct {
	Host *netlab.Host
	Dir  string

	daemons
}

// StartBIRD adds host name to lab and runs BIRD in it as cfg says (only ASN,
// Neighbors and MaximumPaths are used), until tb's cleanup. It skips tb
// without root or BIRD and fails it on error.
func StartBIRD(tb testing.TB, lab *netlab.Lab, name string, cfg Config) *BIRD {
	tb.Helper()
	RequireBIRD(tb)
	b, err := NewBIRD(tb.Context(), lab, name, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	b.closeWith(tb, name)
	return b
}

// NewBIRD adds host name to lab and runs BIRD in it as cfg says (only ASN,
// Neighbors and MaximumPaths are used), until Close. It needs root and
// BIRD. On error it stops what it started.
func NewBIRD(ctx context.Context, lab *netlab.Lab, name string, cfg Config) (_ *BIRD, err error) {
	ds, err := newDaemons(lab, name, "bird", "bird.log", "bird.out")
	if err != nil {
		return nil, err
	}
	h, dir := ds.host, ds.dir
	b := &BIRD{Host: h, Dir: dir, daemons: ds}
	defer func() {
		if err != nil {
			out, _ := os.ReadFile(dir + "/bird.out")
			err = errors.Join(fmt.Errorf("frr: BIRD %s: %w: %s", name, err, out), b.Close())
		}
	}()
	conf := dir + "/bird.conf"
	if err := os.WriteFile(conf, []byte(birdConf(h, cfg, dir)), 0o644); err != nil {
		return nil, err
	}
	// -f: stay in the foreground, so that Close kills the daemon itself.
	if err := b.start([]string{"bird", "-f", "-c", conf, "-s", b.socket(), "-P", dir + "/bird.pid"}); err != nil {
		return nil, err
	}
	if err := waitFile(ctx, b.socket(), 10*time.Second); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *BIRD) socket() string { return b.Dir + "/bird.ctl" }

func birdConf(h *netlab.Host, cfg Config, dir string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "router id %s;\nlog \"%s/bird.log\" all;\nprotocol device {}\n", h.IPv4, dir)
	merge := ""
	if cfg.MaximumPaths > 1 {
		merge = fmt.Sprintf("  merge paths on limit %d;\n", cfg.MaximumPaths)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&s, "protocol kernel k%s {\n  %s { export all; };\n%s}\n", fam, fam, merge)
	}
	for i, n := range cfg.Neighbors {
		fam := "ipv4"
		if n.Addr.Is6() {
			fam = "ipv6"
		}
		fmt.Fprintf(&s, "protocol bgp n%d {\n  local as %d;\n  neighbor %s as %d;\n  passive on;\n  %s { import all; export none; };\n", i, cfg.ASN, n.Addr, n.ASN, fam)
		if n.AllFamilies {
			other := map[string]string{"ipv4": "ipv6", "ipv6": "ipv4"}[fam]
			fmt.Fprintf(&s, "  %s { import all; export none; };\n", other)
		}
		if n.Password != "" {
			fmt.Fprintf(&s, "  password \"%s\";\n", n.Password)
		}
		s.WriteString("}\n")
	}
	return s.String()
}

// Birdc runs a birdc command and returns its output.
func (b *BIRD) Birdc(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command("birdc", append([]string{"-s", b.socket()}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("birdc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
