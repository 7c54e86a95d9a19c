package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/testwait"
)

// TestFRRUnnumbered runs an interface peer against FRR's unnumbered
// neighbor over a veth with only link-local addresses, from the root
// namespace (the Server's) to the router's. LinkLocalNeighbor fails while
// the link is down, and finds the router once FRR's Router Advertisements
// reach the root namespace; the session then carries an IPv6 route, which
// FRR installs via our link-local address on the link, and an IPv4 route
// with an IPv4 next hop (the bridge's address, which FRR reaches).
func TestFRRUnnumbered(t *testing.T) {
	frr.Require(t)
	lab := netlab.New(t)
	ctx := context.Background()
	r := frr.Start(t, lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{
		{Interface: "down1", ASN: localASN, AllFamilies: true}}})
	// The lab's id in the name: the lab's cleanup removes what is left.
	up := "bu" + lab.ID
	if _, err := LinkLocalNeighbor(up); err == nil || !strings.Contains(err.Error(), "does not exist on this node") {
		t.Fatalf("LinkLocalNeighbor(%s) before the link exists: %v", up, err)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", up, "type", "veth", "peer", "name", "down1", "netns", r.Host.Netns},
		{"sysctl", "-qw", "net.ipv6.conf." + up + ".accept_dad=0"},
		{"ip", "netns", "exec", r.Host.Netns, "sysctl", "-qw", "net.ipv6.conf.down1.accept_dad=0"},
		{"ip", "link", "set", up, "up"},
		{"ip", "-n", r.Host.Netns, "link", "set", "down1", "up"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", up).Run() })

	var neighbor netip.Addr
	start := time.Now()
	testwait.Eventually(t, 30*time.Second, func() error {
		var err error
		neighbor, err = LinkLocalNeighbor(up)
		return err
	})
	t.Logf("the router's link-local address %v in the neighbor table after %v", neighbor, time.Since(start))
	if !neighbor.IsLinkLocalUnicast() || neighbor.Zone() != up {
		t.Fatalf("LinkLocalNeighbor = %v, want a link-local address zoned %s", neighbor, up)
	}

	// FRR learns our address from our Router Advertisements.
	if err := AnnounceLinkLocal(up); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, lab)
	p := Peer{Name: "up", Interface: up, Address: neighbor, ASN: routerASN, LocalASN: localASN, HoldTime: 9 * time.Second,
		Families: []Family{IPv4Unicast, IPv6Unicast}, NextHopIPv4: lab.Gateway4}
	if err := s.SetPeers(ctx, []Peer{p}); err != nil {
		t.Fatal(err)
	}
	p32 := netip.MustParsePrefix("198.51.100.20/32")
	p128 := netip.MustParsePrefix("2001:db8:100::20/128")
	mustAdvertise(t, s, "up", Advertisement{Prefix: p32}, Advertisement{Prefix: p128})
	waitEstablished(t, s, "up")

	out, err := exec.Command("ip", "-6", "-o", "addr", "show", "dev", up, "scope", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("our link-local address: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	ours := netip.Prefix{}
	if i := slices.Index(f, "inet6"); i >= 0 && i+1 < len(f) {
		ours, _ = netip.ParsePrefix(f[i+1])
	}
	testwait.Eventually(t, 10*time.Second, func() error {
		if got := frr.KernelNextHops(t, r.Host, p128); !slices.Equal(got, []netip.Addr{ours.Addr()}) {
			return fmt.Errorf("FRR's kernel route for %s via %v, want via our link-local %v", p128, got, ours.Addr())
		}
		if got := frr.KernelNextHops(t, r.Host, p32); !slices.Equal(got, []netip.Addr{lab.Gateway4}) {
			return fmt.Errorf("FRR's kernel route for %s via %v, want via %v", p32, got, lab.Gateway4)
		}
		return nil
	})

	// Removing the peer withdraws both.
	if err := s.SetPeers(ctx, nil); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, func() error {
		for _, pfx := range []netip.Prefix{p32, p128} {
			if got := frr.KernelNextHops(t, r.Host, pfx); len(got) != 0 {
				return fmt.Errorf("FRR's kernel route for %s still via %v", pfx, got)
			}
		}
		return nil
	})
}
