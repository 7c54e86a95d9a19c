package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/netlab"
)

// The FRR daemons the integration tests run; Debian and Ubuntu put them
// here (package frr).
const (
	frrDir = "/usr/lib/frr"
	vtysh  = "vtysh"
)

// requireFRR skips tb unless it runs as root with FRR installed.
func requireFRR(tb testing.TB) {
	tb.Helper()
	netlab.RequireRoot(tb)
	for _, p := range []string{filepath.Join(frrDir, "bgpd"), filepath.Join(frrDir, "zebra")} {
		if _, err := os.Stat(p); err != nil {
			tb.Skipf("FRR not installed (%v): install it with `apt-get install -y frr` (Debian/Ubuntu) to run the BGP integration tests", err)
		}
	}
	if _, err := exec.LookPath(vtysh); err != nil {
		tb.Skipf("vtysh not found: install it with `apt-get install -y frr`")
	}
}

// neighbor is one neighbor statement in a router's configuration.
type neighbor struct {
	addr     netip.Addr
	asn      uint32
	password string
}

// router is an FRR zebra+bgpd pair in its own lab host.
type router struct {
	host *netlab.Host
	dir  string // config, pid files, logs and vty sockets
}

// startRouter starts zebra and bgpd, as AS asn, in a new host of lab, and
// stops them in tb's cleanup (netlab kills anything left in the namespace).
func startRouter(tb testing.TB, lab *netlab.Lab, name string, asn uint32, gracefulRestart bool, nbrs ...neighbor) *router {
	tb.Helper()
	h := lab.AddHost(name)
	dir := tb.TempDir()
	// FRR's zebra drops privileges to the frr user, which must reach dir.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("chown", "frr:frr", dir).CombinedOutput(); err != nil {
		tb.Fatalf("chown %s: %v: %s", dir, err, out)
	}
	r := &router{host: h, dir: dir}
	var b strings.Builder
	fmt.Fprintf(&b, "hostname %s\nrouter bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n", name, asn, h.IPv4)
	if gracefulRestart {
		b.WriteString(" bgp graceful-restart\n")
	}
	for _, n := range nbrs {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", n.addr, n.asn, n.addr)
		if n.password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n.addr, n.password)
		}
	}
	b.WriteString(" address-family ipv6 unicast\n")
	for _, n := range nbrs {
		fmt.Fprintf(&b, "  neighbor %s activate\n", n.addr)
	}
	b.WriteString(" exit-address-family\n")
	r.writeFile(tb, "bgpd.conf", b.String())
	r.writeFile(tb, "zebra.conf", "hostname "+name+"\n")
	common := []string{"-P", "0", "-z", r.path("zserv.api"), "--vty_socket", dir}
	r.run(tb, append([]string{filepath.Join(frrDir, "zebra"), "-u", "frr", "-g", "frr", "-f", r.path("zebra.conf"),
		"-i", r.path("zebra.pid"), "--log", "file:" + r.path("zebra.log")}, common...))
	r.waitFor(tb, "zserv.api")
	r.run(tb, append([]string{filepath.Join(frrDir, "bgpd"), "-S", "-f", r.path("bgpd.conf"),
		"-i", r.path("bgpd.pid"), "--log", "file:" + r.path("bgpd.log")}, common...))
	r.waitFor(tb, "bgpd.vty")
	return r
}

func (r *router) path(name string) string { return filepath.Join(r.dir, name) }

func (r *router) writeFile(tb testing.TB, name, content string) {
	tb.Helper()
	if err := os.WriteFile(r.path(name), []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// run starts argv in the router's namespace and kills it in cleanup.
func (r *router) run(tb testing.TB, argv []string) {
	tb.Helper()
	cmd := r.host.Command(context.Background(), argv...)
	out, err := os.Create(r.path(filepath.Base(argv[0]) + ".out"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", argv[0], err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out.Close()
		if tb.Failed() {
			for _, f := range []string{"bgpd.log", "zebra.out", "bgpd.out"} {
				if b, err := os.ReadFile(r.path(f)); err == nil && len(b) > 0 {
					tb.Logf("%s %s:\n%s", r.host.Name, f, tail(string(b), 3000))
				}
			}
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (r *router) waitFor(tb testing.TB, name string) {
	tb.Helper()
	eventually(tb, 10*time.Second, func() error {
		_, err := os.Stat(r.path(name))
		return err
	})
}

// vtysh runs show commands against the router and returns the output.
func (r *router) vtysh(tb testing.TB, cmd string) string {
	tb.Helper()
	out, err := exec.Command(vtysh, "--vty_socket", r.dir, "-c", cmd).CombinedOutput()
	if err != nil {
		tb.Fatalf("vtysh -c %q: %v: %s", cmd, err, out)
	}
	return string(out)
}

// frrPath is the part of FRR's "show bgp ... <prefix> json" the tests read.
type frrPath struct {
	Valid     bool `json:"valid"`
	Stale     bool `json:"stale"`
	LocPrf    *uint32
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

// route returns the router's path for pfx, or nil if it has none.
func (r *router) route(tb testing.TB, pfx netip.Prefix) *frrPath {
	tb.Helper()
	afi := "ipv4"
	if pfx.Addr().Is6() {
		afi = "ipv6"
	}
	var got struct {
		Paths []frrPath `json:"paths"`
	}
	out := r.vtysh(tb, fmt.Sprintf("show bgp %s unicast %s json", afi, pfx))
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		tb.Fatalf("parse %q: %v", out, err)
	}
	if len(got.Paths) == 0 {
		return nil
	}
	return &got.Paths[0]
}

// neighborState returns FRR's view of a session: its state and how many
// times it was established.
func (r *router) neighborState(tb testing.TB, addr netip.Addr) (state string, established int) {
	tb.Helper()
	var got map[string]struct {
		BgpState               string `json:"bgpState"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
	}
	out := r.vtysh(tb, fmt.Sprintf("show bgp neighbors %s json", addr))
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		tb.Fatalf("parse %q: %v", out, err)
	}
	n := got[addr.String()]
	return n.BgpState, n.ConnectionsEstablished
}

// kernelRoute returns the router's kernel route for pfx ("" if none).
func (r *router) kernelRoute(tb testing.TB, pfx netip.Prefix) string {
	tb.Helper()
	fam := "-4"
	if pfx.Addr().Is6() {
		fam = "-6"
	}
	out, err := exec.Command("ip", fam, "-n", r.host.Netns, "route", "show", pfx.String()).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip route: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// eventually polls f every 50ms until it returns nil or d has passed.
func eventually(tb testing.TB, d time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
