package speaker

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// FuzzCompute plans for a node whose annotations and labels, and for a
// Service, pool, peer and advertisement whose addresses and numbers come
// from the fuzzer. Compute must not panic, and whatever it is fed it must
// forward only addresses that a Service's status or the node's forwarding
// annotation names, announce only routes that contain such an address to
// peers it opens, announce nothing from an ineligible node, and own no
// layer-2 address without quorum.
func FuzzCompute(f *testing.F) {
	f.Add("198.51.100.10", "198.51.100.0/24", "198.18.0.1", "198.18.7.17", "default/web", "a", int32(80), int32(30080), int32(32), int32(-1), true, false)
	f.Add("2001:db8::10,198.51.100.10", "2001:db8::/64,198.51.100.0/24", "2001:db8:ff::1", "not-an-ip", "default/web", "", int32(443), int32(0), int32(64), int32(129), true, true)
	f.Add("::,0.0.0.0", "::/0,0.0.0.0/0", "0.0.0.0", "169.254.169.254", "default/gone", "b", int32(0), int32(70000), int32(0), int32(0), false, false)
	f.Add("fe80::1%eth0", "fe80::/10", "fe80::2", "::1", "default/web", "a", int32(-5), int32(1), int32(33), int32(128), true, true)

	f.Fuzz(func(t *testing.T, status, poolAddrs, peerAddr, annAddr, annSvc, rack string, port, nodePort, aggV4, aggV6 int32, quorate, unschedulable bool) {
		n := node(func(n *corev1.Node) {
			n.Labels["rack"] = rack
			n.Spec.Unschedulable = unschedulable
			n.Annotations = map[string]string{v1alpha1.NodeAnnotationForwardPrefix + annAddr: annSvc}
		})
		svc := lbService("web", strings.Split(status, ","), func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{
				{Protocol: corev1.ProtocolTCP, Port: port, NodePort: nodePort},
				{Protocol: corev1.ProtocolUDP, Port: port, NodePort: nodePort},
			}
		})
		pl := pool("p", strings.Split(poolAddrs, ",")...)
		a := adv("all", func(s *v1alpha1.BerthBGPAdvertisementSpec) {
			if aggV4 >= 0 {
				s.AggregationLength = &aggV4
			}
			if aggV6 >= 0 {
				s.AggregationLengthV6 = &aggV6
			}
		})
		l2 := l2adv("lan", func(s *v1alpha1.BerthL2AdvertisementSpec) { s.IPPools = []string{"p"} })
		s := Snapshot{
			Node: n, Nodes: []*corev1.Node{n}, Services: []*corev1.Service{svc},
			Pools: []*v1alpha1.BerthIPPool{pl}, Peers: []*v1alpha1.BerthBGPPeer{peer("r1", peerAddr)},
			BGPAdvs: []*v1alpha1.BerthBGPAdvertisement{a}, L2Advs: []*v1alpha1.BerthL2Advertisement{l2},
			L2: L2View{Members: []string{n.Name}, Quorate: quorate, Lease: 1},
		}
		p := Compute(s)

		named := map[netip.Addr]bool{}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil {
				named[a.Unmap()] = true
			}
		}
		annotated, _ := netip.ParseAddr(annAddr)
		for _, r := range p.Forward {
			if !named[r.Address] && r.Address != annotated {
				t.Errorf("forwards %v, which neither the Service's status nor the node's annotation names", r.Address)
			}
		}
		var peers []string
		for _, pr := range p.Peers {
			peers = append(peers, pr.Name)
		}
		for name, routes := range p.Routes {
			if !slices.Contains(peers, name) {
				t.Errorf("routes for %q, which is not an opened peer %v", name, peers)
			}
			if !p.Eligible && len(routes) > 0 {
				t.Errorf("ineligible node (%s) announces %v", p.Why, routes)
			}
			for _, r := range routes {
				if !slices.ContainsFunc(slices.Collect(maps.Keys(named)), r.Prefix.Contains) {
					t.Errorf("announces %v, which contains no address of the Service %v", r.Prefix, status)
				}
			}
		}
		if !quorate && len(p.L2Owned) > 0 {
			t.Errorf("owns %v on layer 2 without quorum", p.L2Owned)
		}
		for _, a := range p.L2Owned {
			if !named[a] {
				t.Errorf("owns %v on layer 2, which no Service's status names", a)
			}
		}
	})
}
