package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
)

// bothFamilies makes a BerthBGPPeer carry IPv4 and IPv6 over its one session.
func bothFamilies(s *v1alpha1.BerthBGPPeerSpec) {
	s.Families = []v1alpha1.BGPFamily{v1alpha1.BGPFamilyIPv4, v1alpha1.BGPFamilyIPv6}
}

// onNode selects one node for a BerthBGPPeer.
func onNode(n *labNode) func(*v1alpha1.BerthBGPPeerSpec) {
	return func(s *v1alpha1.BerthBGPPeerSpec) {
		s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{nodeLabel: n.name}}
	}
}

// TestSpeakerBGPMultiprotocol checks that one session per node carries both
// families (MP-BGP) to FRR: node1 peers over IPv4 only, node2 over IPv6
// only, and the router learns, installs and forwards to the Service's IPv4
// and IPv6 addresses via each node's address of the route's family.
func TestSpeakerBGPMultiprotocol(t *testing.T) {
	sl := newSpeakerLab(t, 2)
	n1, n2 := sl.nodes[0], sl.nodes[1]
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, MaximumPaths: 8, Neighbors: []frr.Neighbor{
		{Addr: n1.host.IPv4, ASN: nodeASN, AllFamilies: true},
		{Addr: n2.host.IPv6, ASN: nodeASN, AllFamilies: true},
	}})
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24", "2001:db8:5100::/112"}})
	sl.bgpPeer("r1-over-v4", r1.Host.IPv4, routerASN, nodeASN, bothFamilies, onNode(n1))
	sl.bgpPeer("r1-over-v6", r1.Host.IPv6, routerASN, nodeASN, bothFamilies, onNode(n2))
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.startSpeakers()
	sl.e.namespace(t, "demo", nil)
	waitSessions(t, r1, []netip.Addr{n1.host.IPv4}, []netip.Addr{n2.host.IPv6})

	sl.e.service(t, "demo", "web", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	got := sl.e.waitService(t, "demo", "web", "two addresses", func(s *corev1.Service) bool { return len(addrs(s)) == 2 })
	web4, web6 := split(addrs(got))
	d4 := waitNextHops(t, r1.Host, hostRoute(web4), sl.addrs(false), settle)
	d6 := waitNextHops(t, r1.Host, hostRoute(web6), sl.addrs(true), settle)
	t.Logf("MEASURED: both families through one session per node: IPv4 %s via %v after %v, IPv6 %s via %v after %v",
		web4, sl.addrs(false), d4, web6, sl.addrs(true), d6)
	checkBGPNextHops(t, r1, hostRoute(web4), sl.addrs(false))
	checkBGPNextHops(t, r1, hostRoute(web6), sl.addrs(true))
	// r1 knows no other neighbor than these two sessions: both families'
	// routes came through them.

	// Traffic: each node answers on the Service's addresses (standing in
	// for the forwarding to NodePorts, tested on its own), and r1 reaches
	// each node through each family's route while the other is cordoned.
	for _, n := range sl.nodes {
		answerOn(t, n.host, n.name, web4, web6)
	}
	for _, tc := range []struct{ serving, cordoned *labNode }{{n1, n2}, {n2, n1}} {
		sl.setUnschedulable(tc.cordoned, true)
		waitNextHops(t, r1.Host, hostRoute(web4), sl.addrs(false, tc.serving), settle)
		waitNextHops(t, r1.Host, hostRoute(web6), sl.addrs(true, tc.serving), settle)
		for _, a := range []netip.Addr{web4, web6} {
			who, err := askName(t.Context(), r1.Host, a)
			if err != nil || who != tc.serving.name {
				t.Errorf("r1 to %s with only %s announcing: answered by %q, %v", a, tc.serving.name, who, err)
			}
		}
		sl.setUnschedulable(tc.cordoned, false)
	}
}

// TestSpeakerBGPMultiprotocolBIRD is TestSpeakerBGPMultiprotocol's first
// half against BIRD 2: one IPv4 session per node carries both families.
func TestSpeakerBGPMultiprotocolBIRD(t *testing.T) {
	frr.RequireBIRD(t)
	sl := newSpeakerLab(t, 2)
	var neighbors []frr.Neighbor
	for _, n := range sl.nodes {
		neighbors = append(neighbors, frr.Neighbor{Addr: n.host.IPv4, ASN: nodeASN, AllFamilies: true})
	}
	b := frr.StartBIRD(t, sl.lab, "bird", frr.Config{ASN: routerASN, Neighbors: neighbors, MaximumPaths: 8})
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24", "2001:db8:5100::/112"}})
	sl.bgpPeer("bird", b.Host.IPv4, routerASN, nodeASN, bothFamilies)
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.startSpeakers()
	sl.e.namespace(t, "demo", nil)
	poll(t, settle, "BIRD's sessions Established", func() error {
		out := b.Birdc(t, "show", "protocols")
		if n := strings.Count(out, "Established"); n != len(sl.nodes) {
			return fmt.Errorf("%d Established:\n%s", n, out)
		}
		return nil
	})
	sl.e.service(t, "demo", "web", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	got := sl.e.waitService(t, "demo", "web", "two addresses", func(s *corev1.Service) bool { return len(addrs(s)) == 2 })
	web4, web6 := split(addrs(got))
	d4 := waitNextHops(t, b.Host, hostRoute(web4), sl.addrs(false), settle)
	d6 := waitNextHops(t, b.Host, hostRoute(web6), sl.addrs(true), settle)
	t.Logf("MEASURED: BIRD, both families over one IPv4 session per node: IPv4 after %v, IPv6 after %v", d4, d6)
	for _, n := range sl.nodes {
		answerOn(t, n.host, n.name, web4, web6)
	}
	for _, a := range []netip.Addr{web4, web6} {
		if who, err := askName(t.Context(), b.Host, a); err != nil || who == "" {
			t.Errorf("BIRD's host to %s: answered by %q, %v", a, who, err)
		}
	}
}

// answerOn makes h hold addrs (on lo) and answer every TCP connection to
// port 80 of them with name, until the test ends.
func answerOn(t testing.TB, h *netlab.Host, name string, addrs ...netip.Addr) {
	t.Helper()
	for _, a := range addrs {
		args := []string{"ip", "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"}
		if a.Is6() {
			args = append(args, "nodad") // usable at once, not tentative
		}
		if _, err := h.Exec(t.Context(), args...); err != nil {
			t.Fatal(err)
		}
		l, _, err := h.Listen("tcp", netip.AddrPortFrom(a, 80).String())
		if err != nil {
			t.Fatalf("listen on %s in %s: %v", a, h.Name, err)
		}
		t.Cleanup(func() { _ = l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, name)
				_ = c.Close()
			}
		}()
	}
}

// askName connects from h to port 80 of a and returns what the other end says
// (the name of the node that answered).
func askName(ctx context.Context, h *netlab.Host, a netip.Addr) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := h.DialContext(ctx, "tcp", netip.AddrPortFrom(a, 80).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}
