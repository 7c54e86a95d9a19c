package frr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// Dir is where Debian and Ubuntu install FRR's daemons (package frr).
const Dir = "/usr/lib/frr"

// Require skips tb unless it runs as root with FRR installed.
func Require(tb testing.TB) {
	tb.Helper()
	netlab.RequireRoot(tb)
	hostdeps.Require(tb, filepath.Join(Dir, "bgpd"), filepath.Join(Dir, "zebra"), "vtysh")
}

// Neighbor is one neighbor statement in a router's configuration.
type Neighbor struct {
	Addr netip.Addr
	// Interface, instead of Addr, makes the neighbor whoever is at the
	// other end of that interface (FRR's unnumbered "neighbor IF
	// interface"): FRR sends Router Advertisements on it and peers with
	// the link-local address that answers.
	Interface string
	ASN       uint32
	Password  string
	// Passive: the router never dials the neighbor, only accepts it.
	Passive bool
	// TTLSecurityHops, if set, turns on GTSM: the neighbor's packets must
	// arrive with TTL 255 minus at most this many hops, else the kernel
	// drops them.
	TTLSecurityHops int
	// AllFamilies activates the neighbor for both unicast families (one
	// MP-BGP session), not only the family of its address.
	AllFamilies bool
}

// Config describes an FRR router.
type Config struct {
	// ASN is the router's AS number.
	ASN uint32
	// Neighbors are configured explicitly, each activated for the unicast
	// family of its address (or both, see Neighbor.AllFamilies).
	Neighbors []Neighbor
	// GracefulRestart enables BGP graceful restart (helper mode).
	GracefulRestart bool
	// MaximumPaths, if above 1, enables ECMP over that many paths, in BGP
	// and in zebra.
	MaximumPaths int
	// Port, if set, is the TCP port bgpd listens on instead of 179.
	Port int
	// Networks are originated by bgpd itself (network statements, without
	// the import check, so nothing needs to be in zebra's table): the
	// fastest way to make FRR announce many routes.
	Networks []netip.Prefix
}

// Router is an FRR zebra+bgpd pair in its own lab host.
type Router struct {
	Host *netlab.Host
	// Dir holds the configuration, pid files, logs and vty sockets.
	Dir string

	daemons
}

// Start adds host name to lab and runs zebra and bgpd in it as cfg says,
// until tb's cleanup. It skips tb without root or FRR and fails it on
// error; when tb has failed, cleanup logs the daemons' logs.
func Start(tb testing.TB, lab *netlab.Lab, name string, cfg Config) *Router {
	tb.Helper()
	Require(tb)
	r, err := NewRouter(tb.Context(), lab, name, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r.closeWith(tb, name)
	return r
}

// NewRouter adds host name to lab and runs zebra and bgpd in it as cfg
// says, until Close. It needs root and FRR. On error it stops what it
// started; the host stays until the lab is closed.
func NewRouter(ctx context.Context, lab *netlab.Lab, name string, cfg Config) (*Router, error) {
	h, err := lab.CreateHost(name)
	if err != nil {
		return nil, err
	}
	return NewRouterOn(ctx, h, cfg)
}

// StartOn runs zebra and bgpd as cfg says in a host that exists already
// (say, a node, to play another implementation's speaker there), until
// tb's cleanup or Stop.
func StartOn(tb testing.TB, h *netlab.Host, cfg Config) *Router {
	tb.Helper()
	Require(tb)
	r, err := NewRouterOn(tb.Context(), h, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r.closeWith(tb, h.Name)
	return r
}

// NewRouterOn runs zebra and bgpd as cfg says in the host h, until Close.
func NewRouterOn(ctx context.Context, h *netlab.Host, cfg Config) (_ *Router, err error) {
	name := h.Name
	ds, err := daemonsOn(h, "frr", "bgpd.log", "zebra.log", "zebra.out", "bgpd.out")
	if err != nil {
		return nil, err
	}
	dir := ds.dir
	r := &Router{Host: h, Dir: dir, daemons: ds}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("frr: router %s: %w", name, err), r.Close())
		}
	}()
	// zebra drops privileges to the frr user, which must reach dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "chown", "frr:frr", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chown %s: %w: %s", dir, err, out)
	}
	if err := r.writeFile("bgpd.conf", bgpdConf(name, h.IPv4, cfg)); err != nil {
		return nil, err
	}
	if err := r.writeFile("zebra.conf", "hostname "+name+"\n"); err != nil {
		return nil, err
	}
	common := []string{"-P", "0", "-z", r.path("zserv.api"), "--vty_socket", dir}
	zebra := []string{filepath.Join(Dir, "zebra"), "-u", "frr", "-g", "frr", "-f", r.path("zebra.conf"),
		"-i", r.path("zebra.pid"), "--log", "file:" + r.path("zebra.log")}
	if cfg.MaximumPaths > 1 {
		zebra = append(zebra, "-e", fmt.Sprint(cfg.MaximumPaths))
	}
	if err := r.start(append(zebra, common...)); err != nil {
		return nil, err
	}
	if err := r.waitFor(ctx, "zserv.api"); err != nil {
		return nil, err
	}
	bgpd := []string{filepath.Join(Dir, "bgpd"), "-S", "-f", r.path("bgpd.conf"),
		"-i", r.path("bgpd.pid"), "--log", "file:" + r.path("bgpd.log")}
	if cfg.Port != 0 {
		bgpd = append(bgpd, "-p", fmt.Sprint(cfg.Port))
	}
	if err := r.start(append(bgpd, common...)); err != nil {
		return nil, err
	}
	if err := r.waitFor(ctx, "bgpd.vty"); err != nil {
		return nil, err
	}
	return r, nil
}

// bgpdConf renders bgpd's configuration. FRR 8.4 needs no
// ebgp-requires-policy, or it accepts no eBGP route without a policy.
func bgpdConf(name string, routerID netip.Addr, cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname %s\nrouter bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n", name, cfg.ASN, routerID)
	if cfg.GracefulRestart {
		b.WriteString(" bgp graceful-restart\n")
	}
	if len(cfg.Networks) > 0 {
		b.WriteString(" no bgp network import-check\n")
	}
	for _, n := range cfg.Neighbors {
		if n.Interface != "" {
			fmt.Fprintf(&b, " neighbor %s interface remote-as %d\n neighbor %s timers connect 1\n", n.Interface, n.ASN, n.Interface)
		} else {
			fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", n.Addr, n.ASN, n.Addr)
		}
		if n.Password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n.key(), n.Password)
		}
		if n.Passive {
			fmt.Fprintf(&b, " neighbor %s passive\n", n.key())
		}
		if n.TTLSecurityHops > 0 {
			fmt.Fprintf(&b, " neighbor %s ttl-security hops %d\n", n.key(), n.TTLSecurityHops)
		}
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n", fam)
		if cfg.MaximumPaths > 1 {
			fmt.Fprintf(&b, "  maximum-paths %d\n  maximum-paths ibgp %d\n", cfg.MaximumPaths, cfg.MaximumPaths)
		}
		for _, n := range cfg.Neighbors {
			// An interface neighbor's session is IPv6 (link-local).
			if n.AllFamilies || (n.Interface == "" && n.Addr.Is4()) == (fam == "ipv4") {
				fmt.Fprintf(&b, "  neighbor %s activate\n", n.key())
			}
		}
		for _, p := range cfg.Networks {
			if p.Addr().Is4() == (fam == "ipv4") {
				fmt.Fprintf(&b, "  network %s\n", p)
			}
		}
		b.WriteString(" exit-address-family\n")
	}
	return b.String()
}

// key is how FRR's configuration names n: its interface or its address.
func (n Neighbor) key() string {
	if n.Interface != "" {
		return n.Interface
	}
	return n.Addr.String()
}

func (r *Router) path(name string) string { return filepath.Join(r.Dir, name) }

func (r *Router) writeFile(name, content string) error {
	return os.WriteFile(r.path(name), []byte(content), 0o644)
}

// waitFor waits up to 10 s for the file name to appear in the router's
// directory.
func (r *Router) waitFor(ctx context.Context, name string) error {
	return waitFile(ctx, r.path(name), 10*time.Second)
}

// Stop ends bgpd with SIGTERM, upon which it sends its neighbors a Cease
// and they withdraw its routes at once (as when a router, or a speaker's
// Pod, is shut down), then zebra; it waits up to 5 s for each.
func (r *Router) Stop(tb testing.TB) {
	tb.Helper()
	for _, name := range []string{"bgpd", "zebra"} {
		r.terminate(name, 5*time.Second)
	}
}

// Vtysh runs a command against the router and returns its output.
func (r *Router) Vtysh(tb testing.TB, cmd string) string {
	tb.Helper()
	out, err := exec.Command("vtysh", "--vty_socket", r.Dir, "-c", cmd).CombinedOutput()
	if err != nil {
		tb.Fatalf("vtysh -c %q: %v: %s", cmd, err, out)
	}
	return string(out)
}

// Path is the part of one of FRR's BGP paths the tests read.
type Path struct {
	Valid     bool   `json:"valid"`
	Stale     bool   `json:"stale"`
	Multipath bool   `json:"multipath"`
	LocPrf    *int64 `json:"locPrf"`
	// Community and LargeCommunity are only in the per-prefix output.
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Nexthops []struct {
		IP    string `json:"ip"`
		Scope string `json:"scope"`
	} `json:"nexthops"`
}

// NextHop returns the path's global next hop.
func (p Path) NextHop() string {
	for _, n := range p.Nexthops {
		if n.Scope != "link-local" {
			return n.IP
		}
	}
	return ""
}

// Paths returns the router's BGP paths for pfx (none if it has none), with
// their attributes.
func (r *Router) Paths(tb testing.TB, pfx netip.Prefix) []Path {
	tb.Helper()
	var got struct {
		Paths []Path `json:"paths"`
	}
	out := r.Vtysh(tb, fmt.Sprintf("show bgp %s unicast %s json", afi(pfx.Addr()), pfx))
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		tb.Fatalf("parse %q: %v", out, err)
	}
	return got.Paths
}

// Path returns the router's first path for pfx, the only one where a single
// peer announces it, or nil if it has none.
func (r *Router) Path(tb testing.TB, pfx netip.Prefix) *Path {
	tb.Helper()
	if ps := r.Paths(tb, pfx); len(ps) > 0 {
		return &ps[0]
	}
	return nil
}

// Table returns the router's whole BGP table of a family: the prefixes and
// their paths ("show bgp ipv4 unicast json").
func (r *Router) Table(tb testing.TB, ipv6 bool) map[string][]Path {
	tb.Helper()
	fam := "ipv4"
	if ipv6 {
		fam = "ipv6"
	}
	var got struct {
		Routes map[string][]Path `json:"routes"`
	}
	out := r.Vtysh(tb, "show bgp "+fam+" unicast json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		tb.Fatalf("parse %q: %v", out, err)
	}
	return got.Routes
}

// NeighborState returns FRR's view of a session: its state ("Established",
// "Active", ...) and how many times it was established.
func (r *Router) NeighborState(tb testing.TB, addr netip.Addr) (state string, established int) {
	tb.Helper()
	return r.NeighborStateOf(tb, addr.String())
}

// NeighborStateOf is NeighborState for a neighbor named as FRR's
// configuration names it: an address, or an interface (unnumbered).
func (r *Router) NeighborStateOf(tb testing.TB, neighbor string) (state string, established int) {
	tb.Helper()
	var got map[string]struct {
		BgpState               string `json:"bgpState"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
	}
	out := r.Vtysh(tb, fmt.Sprintf("show bgp neighbors %s json", neighbor))
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		tb.Fatalf("parse %q: %v", out, err)
	}
	n := got[neighbor]
	return n.BgpState, n.ConnectionsEstablished
}

// KernelNextHops returns the next hops of the router's kernel route for
// pfx, sorted, in the router's namespace; none if there is no route.
func KernelNextHops(tb testing.TB, h *netlab.Host, pfx netip.Prefix) []netip.Addr {
	tb.Helper()
	fam := "-4"
	if pfx.Addr().Is6() {
		fam = "-6"
	}
	out, err := exec.Command("ip", fam, "-n", h.Netns, "route", "show", "exact", pfx.String()).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip route: %v: %s", err, out)
	}
	return parseVia(string(out))
}

// parseVia returns the addresses after each "via" in ip-route output, sorted.
func parseVia(out string) []netip.Addr {
	var hops []netip.Addr
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "via" {
			continue
		}
		v := f[i+1]
		if v == "inet" || v == "inet6" { // "via inet6 fe80::1"
			if i+2 >= len(f) {
				break
			}
			v = f[i+2]
		}
		if a, err := netip.ParseAddr(v); err == nil {
			hops = append(hops, a)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops
}

func afi(a netip.Addr) string {
	if a.Is6() {
		return "ipv6"
	}
	return "ipv4"
}
