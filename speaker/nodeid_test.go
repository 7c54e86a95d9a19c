package speaker

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
)

func TestRouterIDFor(t *testing.T) {
	v4 := map[bool]netip.Addr{true: netip.MustParseAddr("198.18.1.2"), false: netip.MustParseAddr("2001:db8::2")}
	v6 := map[bool]netip.Addr{false: netip.MustParseAddr("2001:db8::2")}
	if got := routerIDFor("n1", v4); got != v4[true] {
		t.Errorf("dual-stack node: router ID %v, want its IPv4 address", got)
	}
	a, b := routerIDFor("n1", v6), routerIDFor("n2", v6)
	if !a.Is4() || a.IsUnspecified() || a != routerIDFor("n1", nil) {
		t.Errorf("IPv6-only node n1: router ID %v, want a stable non-zero IPv4 form", a)
	}
	if a == b {
		t.Errorf("IPv6-only nodes n1 and n2 share router ID %v", a)
	}
}

// TestComputeNodeIdentity checks the peers a node configures from its own
// labels and annotations, and how one dual-stack session carries both
// families.
func TestComputeNodeIdentity(t *testing.T) {
	addr := netip.MustParseAddr
	v6only := func(n *corev1.Node) {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "2001:db8:1::2"}}
	}
	annotate := func(kv ...string) func(*corev1.Node) {
		return func(n *corev1.Node) {
			n.Annotations = map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				n.Annotations[kv[i]] = kv[i+1]
			}
		}
	}
	both := func(p *v1alpha1.BerthBGPPeerSpec) {
		p.Families = []v1alpha1.BGPFamily{v1alpha1.BGPFamilyIPv4, v1alpha1.BGPFamilyIPv6}
	}
	svc := lbService("web", []string{"198.51.100.5", "2001:db8:100::5"})
	tests := []struct {
		name        string
		node        []func(*corev1.Node)
		peers       []*v1alpha1.BerthBGPPeer
		override    netip.Addr
		wantPeers   []bgp.Peer
		wantRoutes  map[string][]bgp.Advertisement
		wantProblem string // substring of a problem; empty: none
	}{{
		name:  "an IPv4 session carries IPv6 routes with the node's IPv6 address as next hop",
		peers: []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1", both)},
		wantPeers: []bgp.Peer{{Name: "r1", Address: addr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("198.18.1.2"),
			Families: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}, NextHopIPv6: addr("2001:db8:1::2")}},
		wantRoutes: map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}, {Prefix: host("2001:db8:100::5")}}},
	}, {
		name:  "an IPv6 session carries IPv4 routes with the node's IPv4 address as next hop",
		peers: []*v1alpha1.BerthBGPPeer{peer("r1", "2001:db8:1::1", both)},
		wantPeers: []bgp.Peer{{Name: "r1", Address: addr("2001:db8:1::1"), Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("198.18.1.2"),
			Families: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}, NextHopIPv4: addr("198.18.1.2")}},
		wantRoutes: map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}, {Prefix: host("2001:db8:100::5")}}},
	}, {
		name: "the peer's next hops win over the node's annotations, which win over its addresses",
		node: []func(*corev1.Node){annotate(v1alpha1.NodeAnnotationNextHopIPv6, "2001:db8:1::77", v1alpha1.NodeAnnotationNextHopIPv4, "198.18.1.77")},
		peers: []*v1alpha1.BerthBGPPeer{
			peer("r1", "198.18.1.1", both, func(p *v1alpha1.BerthBGPPeerSpec) { p.NextHopIPv6 = "2001:db8:1::99" }),
			peer("r2", "198.18.1.3", both),
		},
		wantPeers: []bgp.Peer{
			{Name: "r1", Address: addr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("198.18.1.2"),
				Families: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}, NextHopIPv4: addr("198.18.1.77"), NextHopIPv6: addr("2001:db8:1::99")},
			{Name: "r2", Address: addr("198.18.1.3"), Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("198.18.1.2"),
				Families: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}, NextHopIPv4: addr("198.18.1.77"), NextHopIPv6: addr("2001:db8:1::77")},
		},
		wantRoutes: map[string][]bgp.Advertisement{
			"r1": {{Prefix: host("198.51.100.5")}, {Prefix: host("2001:db8:100::5")}},
			"r2": {{Prefix: host("198.51.100.5")}, {Prefix: host("2001:db8:100::5")}},
		},
	}, {
		name:  "an IPv6-only node gets a hashed router ID and announces no IPv4 route over its IPv6 session",
		node:  []func(*corev1.Node){v6only},
		peers: []*v1alpha1.BerthBGPPeer{peer("r1", "2001:db8:1::1", both)},
		wantPeers: []bgp.Peer{{Name: "r1", Address: addr("2001:db8:1::1"), Port: 179, ASN: 64512, LocalASN: 64513, RouterID: routerIDFor("n1", nil),
			Families: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}}},
		wantRoutes:  map[string][]bgp.Advertisement{"r1": {{Prefix: host("2001:db8:100::5")}}},
		wantProblem: "no IPv4 address to announce as next hop",
	}, {
		name: "router ID, AS number and source addresses from the node",
		node: []func(*corev1.Node){
			annotate(v1alpha1.NodeAnnotationRouterID, "203.0.113.9", v1alpha1.NodeAnnotationSourceIPv4, "198.18.1.20", v1alpha1.NodeAnnotationSourceIPv6, "2001:db8:1::20",
				v1alpha1.NodeLabelLocalASN, "4200000001"),
			func(n *corev1.Node) { n.Labels[v1alpha1.NodeLabelLocalASN] = "65101" },
		},
		peers: []*v1alpha1.BerthBGPPeer{
			peer("r1", "198.18.1.1"),
			peer("r1-v6", "2001:db8:1::1"),
			peer("r2", "198.18.1.3", func(p *v1alpha1.BerthBGPPeerSpec) { p.SourceAddress = "198.18.1.30" }),
		},
		wantPeers: []bgp.Peer{
			{Name: "r1", Address: addr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 65101, RouterID: addr("203.0.113.9"), SourceAddress: addr("198.18.1.20")},
			{Name: "r1-v6", Address: addr("2001:db8:1::1"), Port: 179, ASN: 64512, LocalASN: 65101, RouterID: addr("203.0.113.9"), SourceAddress: addr("2001:db8:1::20")},
			{Name: "r2", Address: addr("198.18.1.3"), Port: 179, ASN: 64512, LocalASN: 65101, RouterID: addr("203.0.113.9"), SourceAddress: addr("198.18.1.30")},
		},
		wantRoutes: map[string][]bgp.Advertisement{
			"r1": {{Prefix: host("198.51.100.5")}}, "r1-v6": {{Prefix: host("2001:db8:100::5")}}, "r2": {{Prefix: host("198.51.100.5")}},
		},
	}, {
		name:       "the AS number annotation, without a label",
		node:       []func(*corev1.Node){annotate(v1alpha1.NodeLabelLocalASN, "65102")},
		peers:      []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1")},
		wantPeers:  []bgp.Peer{{Name: "r1", Address: addr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 65102, RouterID: addr("198.18.1.2")}},
		wantRoutes: map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}}},
	}, {
		name:       "the --router-id flag wins over the annotation",
		node:       []func(*corev1.Node){annotate(v1alpha1.NodeAnnotationRouterID, "203.0.113.9")},
		override:   addr("203.0.113.10"),
		peers:      []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1")},
		wantPeers:  []bgp.Peer{{Name: "r1", Address: addr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("203.0.113.10")}},
		wantRoutes: map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}}},
	}, {
		name: "unreadable annotations are reported and ignored",
		node: []func(*corev1.Node){annotate(v1alpha1.NodeAnnotationRouterID, "2001:db8::9", v1alpha1.NodeLabelLocalASN, "0",
			v1alpha1.NodeAnnotationNextHopIPv6, "198.18.1.9")},
		peers:       []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1")},
		wantPeers:   []bgp.Peer{{Name: "r1", Address: addr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("198.18.1.2")}},
		wantRoutes:  map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}}},
		wantProblem: "annotation bgp.berth.dev/router-id",
	}, {
		name: "an interface peer: an IPv6 session, with no source address and the node's IPv4 address as IPv4 next hop",
		node: []func(*corev1.Node){annotate(v1alpha1.NodeAnnotationSourceIPv6, "2001:db8:1::20")},
		peers: []*v1alpha1.BerthBGPPeer{
			peer("up", "", both, func(p *v1alpha1.BerthBGPPeerSpec) { p.Interface = "eth1" }),
			peer("up-v6", "", func(p *v1alpha1.BerthBGPPeerSpec) { p.Interface = "eth2" }),
		},
		wantPeers: []bgp.Peer{
			{Name: "up", Interface: "eth1", Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("198.18.1.2"),
				Families: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}, NextHopIPv4: addr("198.18.1.2")},
			{Name: "up-v6", Interface: "eth2", Port: 179, ASN: 64512, LocalASN: 64513, RouterID: addr("198.18.1.2")},
		},
		wantRoutes: map[string][]bgp.Advertisement{
			"up": {{Prefix: host("198.51.100.5")}, {Prefix: host("2001:db8:100::5")}}, "up-v6": {{Prefix: host("2001:db8:100::5")}},
		},
	}, {
		name:        "an interface peer on an IPv6-only node announces no IPv4 route",
		node:        []func(*corev1.Node){v6only},
		peers:       []*v1alpha1.BerthBGPPeer{peer("up", "", both, func(p *v1alpha1.BerthBGPPeerSpec) { p.Interface = "eth1" })},
		wantPeers:   []bgp.Peer{{Name: "up", Interface: "eth1", Port: 179, ASN: 64512, LocalASN: 64513, RouterID: routerIDFor("n1", nil), Families: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}}},
		wantRoutes:  map[string][]bgp.Advertisement{"up": {{Prefix: host("2001:db8:100::5")}}},
		wantProblem: "over the session to interface eth1",
	}, {
		name:        "both address and interface, written around admission, break the peer",
		peers:       []*v1alpha1.BerthBGPPeer{peer("up", "198.18.1.1", func(p *v1alpha1.BerthBGPPeerSpec) { p.Interface = "eth1" })},
		wantProblem: "exactly one of address",
	}, {
		name: "a hold time of 0 stored before admission refused it breaks the peer",
		peers: []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1", func(p *v1alpha1.BerthBGPPeerSpec) {
			p.HoldTimeSeconds = new(int32)
		})},
		wantProblem: "holdTimeSeconds 0",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Compute(Snapshot{
				Node:     node(tc.node...),
				Pools:    []*v1alpha1.BerthIPPool{pool("lan", "198.51.100.0/24", "2001:db8:100::/64")},
				Peers:    tc.peers,
				BGPAdvs:  []*v1alpha1.BerthBGPAdvertisement{adv("all")},
				Services: []*corev1.Service{svc},
				RouterID: tc.override,
			})
			checkPeersRoutes(t, got, tc.wantPeers, tc.wantRoutes)
			var problems []string
			for k, v := range got.Problems {
				problems = append(problems, k+": "+v)
			}
			all := strings.Join(problems, "\n")
			if tc.wantProblem == "" && all != "" {
				t.Errorf("problems: %s", all)
			}
			if tc.wantProblem != "" && !strings.Contains(all, tc.wantProblem) {
				t.Errorf("problems %q do not mention %q", all, tc.wantProblem)
			}
		})
	}
}
