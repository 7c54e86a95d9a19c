package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
)

// The ends of the point-to-point link of TestSpeakerBGPUnnumbered: the
// node's uplink and the router's port to it.
const (
	uplink   = "uplink"
	downlink = "down1"
)

// TestSpeakerBGPUnnumbered checks interface peers (docs/bgp.md, "Interface
// peers"): a BerthBGPPeer with interface: uplink makes the node peer with the
// router at the other end of its uplink, a veth with no address but the
// kernel's link-local ones, that FRR configures as "neighbor down1
// interface". Before the link exists the node says why it has no
// session; once it exists, FRR's Router Advertisements put the router in
// the node's neighbor table and the session comes up with no restart.
// The one IPv6 session carries both families: FRR installs the Service's
// IPv6 route via the node's link-local address on the link, and its IPv4
// route via the node's IPv4 address; deleting the BerthBGPPeer withdraws both.
func TestSpeakerBGPUnnumbered(t *testing.T) {
	sl := newSpeakerLab(t, 1)
	n1 := sl.nodes[0]
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{
		{Interface: downlink, ASN: nodeASN, AllFamilies: true},
	}})
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24", "2001:db8:5100::/112"}})
	sl.bgpPeer("spine", netip.Addr{}, routerASN, nodeASN, bothFamilies, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.Address, s.Interface = "", uplink
	})
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.startSpeakers()
	sl.e.namespace(t, "demo", nil)
	sl.e.service(t, "demo", "web", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	got := sl.e.waitService(t, "demo", "web", "two addresses", func(s *corev1.Service) bool { return len(addrs(s)) == 2 })
	web4, web6 := split(addrs(got))

	// No link yet: the node has no session, and says why.
	missing := "interface " + uplink + " does not exist on this node"
	poll(t, settle, "node1's session entry says its uplink is missing", func() error {
		return peerEntryHas(t, sl, "spine", n1.name, metav1.ConditionFalse, missing)
	})
	checkPeerEvent(t, sl, "spine", missing)
	if st, _ := r1.NeighborStateOf(t, downlink); st == "Established" {
		t.Fatalf("r1's session on %s is up before the link exists", downlink)
	}

	// The link appears: no address on it but the link-local ones.
	start := time.Now()
	p2pLink(t, n1.host, uplink, r1.Host, downlink)
	poll(t, time.Minute, "r1's session on "+downlink+" Established", func() error {
		if st, _ := r1.NeighborStateOf(t, downlink); st != "Established" {
			return fmt.Errorf("state %q", st)
		}
		return nil
	})
	up := time.Since(start)
	poll(t, settle, "node1's session entry Established and Configured", func() error {
		s, err := nodeSession(t, sl, n1.name, "spine")
		switch {
		case err != nil:
			return err
		case s.State != "Established" || strings.Contains(s.LastError, "interface "+uplink):
			return fmt.Errorf("state %q, last error %q", s.State, s.LastError)
		}
		return peerEntryHas(t, sl, "spine", n1.name, metav1.ConditionTrue, "")
	})

	nodeLL := linkLocalOf(t, n1.host, uplink)
	d6 := waitNextHops(t, r1.Host, hostRoute(web6), []netip.Addr{nodeLL}, settle)
	d4 := waitNextHops(t, r1.Host, hostRoute(web4), []netip.Addr{n1.host.IPv4}, settle)
	t.Logf("MEASURED: interface peer: session up %v after the link appeared; IPv6 %s via %s%%%s after %v, IPv4 %s via %s after %v",
		up.Round(time.Millisecond), web6, nodeLL, downlink, d6, web4, n1.host.IPv4, d4)
	if out := routeOf(t, r1.Host, hostRoute(web6)); !strings.Contains(out, "dev "+downlink) {
		t.Errorf("r1's route to %s is not through %s: %s", web6, downlink, out)
	}

	// BFD on the interface peer: single-hop, between the link-local
	// addresses, up at both ends (FRR's is up only once it hears the
	// node's session answer).
	r1.StartBFD(t, []frr.BFDPeer{{Addr: nodeLL, Neighbor: downlink}}, routerASN)
	sl.updatePeer("spine", func(s *v1alpha1.BerthBGPPeerSpec) { s.BFD = &v1alpha1.BFDProfile{} })
	d := poll(t, settle, "BFD up between the link-local addresses", func() error {
		for _, p := range r1.BFDPeers(t) {
			if p.Peer == nodeLL.String() && p.Status == "up" && !p.Multihop {
				return nil
			}
		}
		return fmt.Errorf("FRR's BFD sessions: %+v", r1.BFDPeers(t))
	})
	t.Logf("MEASURED: BFD on the interface peer up after %v", d)
	if st, _ := r1.NeighborStateOf(t, downlink); st != "Established" {
		t.Errorf("r1's session on %s with BFD: %q", downlink, st)
	}

	// The BerthBGPPeer goes: the routes go with it.
	if err := sl.e.berth.BerthV1alpha1().BerthBGPPeers().Delete(t.Context(), "spine", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNextHops(t, r1.Host, hostRoute(web6), nil, settle)
	waitNextHops(t, r1.Host, hostRoute(web4), nil, settle)
}

// p2pLink joins a and b with a veth pair, aName in a and bName in b, both
// up: the kernel gives each end a link-local address and nothing else.
// Duplicate address detection is off on both ends, so that the addresses
// are usable at once. The namespaces' removal removes the link.
func p2pLink(t testing.TB, a *netlab.Host, aName string, b *netlab.Host, bName string) {
	t.Helper()
	for _, h := range []struct {
		h    *netlab.Host
		name string
	}{{a, aName}, {b, bName}} {
		// Set before the link exists, as the default of new interfaces.
		if _, err := h.h.Exec(t.Context(), "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"); err != nil {
			t.Fatal(err)
		}
	}
	cmds := [][]string{
		{"ip", "link", "add", aName, "netns", a.Netns, "type", "veth", "peer", "name", bName, "netns", b.Netns},
		{"ip", "-n", a.Netns, "link", "set", aName, "up"},
		{"ip", "-n", b.Netns, "link", "set", bName, "up"},
	}
	for _, c := range cmds {
		if out, err := exec.CommandContext(t.Context(), c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
}

// linkLocalOf returns h's IPv6 link-local address on interface ifname.
func linkLocalOf(t testing.TB, h *netlab.Host, ifname string) netip.Addr {
	t.Helper()
	var found netip.Addr
	poll(t, settle, h.Name+": link-local address on "+ifname, func() error {
		out, err := h.Exec(t.Context(), "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
		if err != nil {
			return err
		}
		f := strings.Fields(out)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet6" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					found = p.Addr()
					return nil
				}
			}
		}
		return fmt.Errorf("none in %q", out)
	})
	return found
}

// routeOf returns h's kernel route for pfx, as ip route prints it.
func routeOf(t testing.TB, h *netlab.Host, pfx netip.Prefix) string {
	t.Helper()
	fam := "-4"
	if pfx.Addr().Is6() {
		fam = "-6"
	}
	out, err := h.Exec(t.Context(), "ip", fam, "route", "show", "exact", pfx.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}
