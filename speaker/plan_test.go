package speaker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/nodeport"
)

func node(mut ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"rack": "a"}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "198.18.1.2"},
				{Type: corev1.NodeInternalIP, Address: "2001:db8:1::2"},
			},
		},
	}
	for _, m := range mut {
		m(n)
	}
	return n
}

func lbService(name string, ips []string, mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}},
		},
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

func pool(name string, addrs ...string) *v1alpha1.BerthIPPool {
	p := &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": name}}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	return p
}

func peer(name, addr string, mut ...func(*v1alpha1.BerthBGPPeerSpec)) *v1alpha1.BerthBGPPeer {
	p := &v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.BerthBGPPeerSpec{Address: addr, ASN: 64512, LocalASN: 64513, Port: 179}}
	for _, m := range mut {
		m(&p.Spec)
	}
	return p
}

func adv(name string, mut ...func(*v1alpha1.BerthBGPAdvertisementSpec)) *v1alpha1.BerthBGPAdvertisement {
	a := &v1alpha1.BerthBGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, m := range mut {
		m(&a.Spec)
	}
	return a
}

func host(s string) netip.Prefix {
	a := netip.MustParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen())
}

func rule(addr string, port, nodePort uint16, nodeIP string) nodeport.Rule {
	return nodeport.Rule{Address: netip.MustParseAddr(addr), Protocol: nodeport.TCP, Port: port,
		NodeIP: netip.MustParseAddr(nodeIP), NodePort: nodePort}
}

func TestCompute(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	u32 := func(v uint32) *uint32 { return &v }
	base := func() Snapshot {
		return Snapshot{
			Node:    node(),
			Pools:   []*v1alpha1.BerthIPPool{pool("lan", "198.51.100.0/24", "2001:db8:100::/64")},
			Peers:   []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1")},
			BGPAdvs: []*v1alpha1.BerthBGPAdvertisement{adv("all")},
		}
	}
	r1 := bgp.Peer{Name: "r1", Address: netip.MustParseAddr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 64513}
	tests := []struct {
		name        string
		mut         func(*Snapshot)
		wantElig    bool
		wantPeers   []bgp.Peer
		wantRoutes  map[string][]bgp.Advertisement
		wantForward []nodeport.Rule
		wantProblem map[string]string
		wantBroken  []string
	}{
		{
			name:      "no services: sessions, no routes",
			wantElig:  true,
			wantPeers: []bgp.Peer{r1},
		},
		{
			name: "a dual-stack service is announced as /32 and /128 and forwarded",
			mut: func(s *Snapshot) {
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5", "2001:db8:100::5"})}
				s.Peers = append(s.Peers, peer("r1-v6", "2001:db8:1::1"))
			},
			wantElig:  true,
			wantPeers: []bgp.Peer{r1, {Name: "r1-v6", Address: netip.MustParseAddr("2001:db8:1::1"), Port: 179, ASN: 64512, LocalASN: 64513}},
			// Each family goes to the session of its family only: an IPv6
			// route over an IPv4 session would need a next hop.
			wantRoutes: map[string][]bgp.Advertisement{
				"r1":    {{Prefix: host("198.51.100.5")}},
				"r1-v6": {{Prefix: host("2001:db8:100::5")}},
			},
			wantForward: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2"), rule("2001:db8:100::5", 80, 30080, "2001:db8:1::2")},
		},
		{
			name: "addresses outside every pool, and externalIPs, are never announced",
			mut: func(s *Snapshot) {
				s.Services = []*corev1.Service{lbService("web", []string{"192.0.2.9"}, func(svc *corev1.Service) {
					svc.Spec.ExternalIPs = []string{"198.51.100.77"}
				})}
			},
			wantElig:  true,
			wantPeers: []bgp.Peer{r1},
		},
		{
			name: "a cordoned node keeps its sessions and announces nothing",
			mut: func(s *Snapshot) {
				s.Node.Spec.Unschedulable = true
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"})}
			},
			wantPeers: []bgp.Peer{r1},
		},
		{
			name: "an excluded node announces nothing",
			mut: func(s *Snapshot) {
				s.Node.Labels[ExcludeLabel] = ""
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"})}
			},
			wantPeers: []bgp.Peer{r1},
		},
		{
			name: "the exclude label set to false excludes nothing, as upstream reads it",
			mut: func(s *Snapshot) {
				s.Node.Labels[ExcludeLabel] = "false"
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"})}
			},
			wantElig:    true,
			wantPeers:   []bgp.Peer{r1},
			wantRoutes:  map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}}},
			wantForward: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2")},
		},
		{
			name: "a node that is not Ready announces nothing",
			mut: func(s *Snapshot) {
				s.Node.Status.Conditions[0].Status = corev1.ConditionFalse
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"})}
			},
			wantPeers: []bgp.Peer{r1},
		},
		{
			name: "ETP=Local without a local ready endpoint is not announced",
			mut: func(s *Snapshot) {
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"}, etpLocal)}
				s.Slices = []*discoveryv1.EndpointSlice{slice("web", "n2", true), slice("web", "n1", false)}
			},
			wantElig:  true,
			wantPeers: []bgp.Peer{r1},
		},
		{
			name: "ETP=Local with a local ready endpoint is announced",
			mut: func(s *Snapshot) {
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"}, etpLocal)}
				s.Slices = []*discoveryv1.EndpointSlice{slice("web", "n1", true)}
			},
			wantElig:    true,
			wantPeers:   []bgp.Peer{r1},
			wantRoutes:  map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}}},
			wantForward: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2")},
		},
		{
			name: "attributes, aggregation and merging of two advertisements",
			mut: func(s *Snapshot) {
				s.Peers = []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1", func(p *v1alpha1.BerthBGPPeerSpec) { p.LocalASN = 64512 })}
				s.BGPAdvs = []*v1alpha1.BerthBGPAdvertisement{
					adv("a", func(a *v1alpha1.BerthBGPAdvertisementSpec) {
						a.Communities = []string{"65000:100", "no-export"}
						a.LocalPreference = i64(200)
					}),
					adv("b", func(a *v1alpha1.BerthBGPAdvertisementSpec) {
						a.Communities = []string{"65000:200"}
						a.LargeCommunities = []string{"64512:1:2"}
						a.LocalPreference = i64(50)
						a.AggregationLength = i32(28)
					}),
				}
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"})}
			},
			wantElig:  true,
			wantPeers: []bgp.Peer{{Name: "r1", Address: netip.MustParseAddr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 64512}},
			wantRoutes: map[string][]bgp.Advertisement{"r1": {
				{Prefix: netip.MustParsePrefix("198.51.100.0/28"), Communities: []uint32{65000<<16 | 200},
					LargeCommunities: []bgp.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}, LocalPref: u32(50)},
				{Prefix: host("198.51.100.5"), Communities: []uint32{65000<<16 | 100, 0xFFFFFF01}, LocalPref: u32(200)},
			}},
			wantForward: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2")},
		},
		{
			name: "aggregation larger than the pool is a problem and announces nothing",
			mut: func(s *Snapshot) {
				s.Pools = []*v1alpha1.BerthIPPool{pool("small", "198.51.100.0/28")}
				s.BGPAdvs = []*v1alpha1.BerthBGPAdvertisement{adv("agg", func(a *v1alpha1.BerthBGPAdvertisementSpec) { a.AggregationLength = i32(24) })}
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"})}
			},
			wantElig:    true,
			wantPeers:   []bgp.Peer{r1},
			wantProblem: map[string]string{"BerthBGPAdvertisement/agg": `aggregation to 198.51.100.0/24 is larger than pool "small"'s addresses; use a longer aggregation length`},
		},
		{
			name: "selectors: pool, service, node and peer",
			mut: func(s *Snapshot) {
				s.Pools = append(s.Pools, pool("other", "203.0.113.0/24"))
				s.Peers = append(s.Peers, peer("r2", "198.18.1.9"), peer("elsewhere", "198.18.1.10", func(p *v1alpha1.BerthBGPPeerSpec) {
					p.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}
				}))
				s.BGPAdvs = []*v1alpha1.BerthBGPAdvertisement{
					adv("lan-to-r2", func(a *v1alpha1.BerthBGPAdvertisementSpec) { a.IPPools = []string{"lan"}; a.Peers = []string{"r2"} }),
					adv("gold-other", func(a *v1alpha1.BerthBGPAdvertisementSpec) {
						a.IPPoolSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "other"}}
						a.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gold"}}
					}),
					adv("rack-b-only", func(a *v1alpha1.BerthBGPAdvertisementSpec) {
						a.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}
					}),
				}
				s.Services = []*corev1.Service{
					lbService("web", []string{"198.51.100.5"}),
					lbService("gold", []string{"203.0.113.5"}),
					lbService("plain", []string{"203.0.113.6"}),
				}
			},
			wantElig:  true,
			wantPeers: []bgp.Peer{r1, {Name: "r2", Address: netip.MustParseAddr("198.18.1.9"), Port: 179, ASN: 64512, LocalASN: 64513}},
			wantRoutes: map[string][]bgp.Advertisement{
				"r1": {{Prefix: host("203.0.113.5")}},
				"r2": {{Prefix: host("198.51.100.5")}, {Prefix: host("203.0.113.5")}},
			},
			wantForward: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2"), rule("203.0.113.5", 80, 30080, "198.18.1.2")},
		},
		{
			name: "peer timers, multihop, graceful restart, a password and a prefix limit",
			mut: func(s *Snapshot) {
				s.Peers = []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1", func(p *v1alpha1.BerthBGPPeerSpec) {
					p.HoldTimeSeconds, p.KeepaliveTimeSeconds, p.EBGPMultiHop = i32(9), i32(3), i32(2)
					p.MaxReceivedPrefixes = i32(500)
					p.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
					p.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp"}
				})}
				s.Passwords = map[string]string{"bgp/password": "s3cret"}
			},
			wantElig: true,
			wantPeers: []bgp.Peer{{Name: "r1", Address: netip.MustParseAddr("198.18.1.1"), Port: 179, ASN: 64512, LocalASN: 64513,
				HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, EBGPMultihopTTL: 2,
				GracefulRestart: true, RestartTime: 120 * time.Second, Password: "s3cret", MaxReceivedPrefixes: 500}},
		},
		{
			name: "peer port, source address and GTSM",
			mut: func(s *Snapshot) {
				s.Peers = []*v1alpha1.BerthBGPPeer{peer("r1", "198.18.1.1", func(p *v1alpha1.BerthBGPPeerSpec) {
					p.Port, p.SourceAddress, p.TTLSecurity = 1179, "198.18.1.250", true
				})}
			},
			wantElig: true,
			wantPeers: []bgp.Peer{{Name: "r1", Address: netip.MustParseAddr("198.18.1.1"), Port: 1179, ASN: 64512, LocalASN: 64513,
				SourceAddress: netip.MustParseAddr("198.18.1.250"), TTLSecurity: true}},
		},
		{
			name: "a missing password Secret breaks only that peer",
			mut: func(s *Snapshot) {
				s.Peers = append(s.Peers, peer("locked", "198.18.1.3", func(p *v1alpha1.BerthBGPPeerSpec) {
					p.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "gone", Key: "pw"}
				}))
			},
			wantElig:    true,
			wantPeers:   []bgp.Peer{r1},
			wantBroken:  []string{"locked"},
			wantProblem: map[string]string{"BerthBGPPeer/locked": `password Secret "gone" has no key "pw" (or does not exist)`},
		},
		{
			name: "a password Secret the speaker may not read breaks only that peer, and says why",
			mut: func(s *Snapshot) {
				s.Peers = append(s.Peers, peer("locked", "198.18.1.3", func(p *v1alpha1.BerthBGPPeerSpec) {
					p.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "unlisted"}
				}))
				s.PasswordErrors = map[string]string{"unlisted/password": "the speaker may not read it"}
			},
			wantElig:    true,
			wantPeers:   []bgp.Peer{r1},
			wantBroken:  []string{"locked"},
			wantProblem: map[string]string{"BerthBGPPeer/locked": `password Secret "unlisted": the speaker may not read it`},
		},
		{
			name: "no NodePorts: announced, not forwarded, and said so",
			mut: func(s *Snapshot) {
				s.Services = []*corev1.Service{lbService("web", []string{"198.51.100.5"}, func(svc *corev1.Service) { svc.Spec.Ports[0].NodePort = 0 })}
			},
			wantElig:    true,
			wantPeers:   []bgp.Peer{r1},
			wantRoutes:  map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}}},
			wantProblem: map[string]string{"Service/default/web": "the Service has no NodePorts (allocateLoadBalancerNodePorts: false); Berth does not forward it and relies on the cluster's proxy"},
		},
		{
			name: "two services sharing an address on different ports get their own rules",
			mut: func(s *Snapshot) {
				s.Services = []*corev1.Service{
					lbService("http", []string{"198.51.100.5"}),
					lbService("dns", []string{"198.51.100.5"}, func(svc *corev1.Service) {
						svc.Spec.Ports = []corev1.ServicePort{{Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053}}
					}),
				}
			},
			wantElig:   true,
			wantPeers:  []bgp.Peer{r1},
			wantRoutes: map[string][]bgp.Advertisement{"r1": {{Prefix: host("198.51.100.5")}}},
			wantForward: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2"),
				{Address: netip.MustParseAddr("198.51.100.5"), Protocol: nodeport.UDP, Port: 53, NodeIP: netip.MustParseAddr("198.18.1.2"), NodePort: 30053}},
		},
		{
			name: "a private address a cloud backend mapped to the node is forwarded; unknown Services and bad keys are not",
			mut: func(s *Snapshot) {
				s.Node.Annotations = map[string]string{
					v1alpha1.NodeAnnotationForwardPrefix + "198.18.7.17": "default/web",
					v1alpha1.NodeAnnotationForwardPrefix + "198.18.7.18": "default/gone",
					v1alpha1.NodeAnnotationForwardPrefix + "not-an-ip":   "default/web",
					"unrelated.example.com/198.18.7.19":                  "default/web",
				}
				// The Elastic IP in status is outside every pool: not announced.
				s.Services = []*corev1.Service{lbService("web", []string{"203.0.113.9"})}
			},
			wantElig:    true,
			wantPeers:   []bgp.Peer{r1},
			wantForward: []nodeport.Rule{rule("198.18.7.17", 80, 30080, "198.18.1.2")},
			wantProblem: map[string]string{"Node/n1": `annotation forward.berth.dev/not-an-ip: "not-an-ip" is not an IP address`},
		},
		{
			name: "a cordoned node still forwards a cloud-mapped address until the CCM moves it",
			mut: func(s *Snapshot) {
				s.Node.Spec.Unschedulable = true
				s.Node.Annotations = map[string]string{v1alpha1.NodeAnnotationForwardPrefix + "198.18.7.17": "default/web"}
				s.Services = []*corev1.Service{lbService("web", []string{"203.0.113.9"})}
			},
			wantPeers:   []bgp.Peer{r1},
			wantForward: []nodeport.Rule{rule("198.18.7.17", 80, 30080, "198.18.1.2")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			if tc.mut != nil {
				tc.mut(&s)
			}
			got := Compute(s)
			for i := range tc.wantPeers {
				if !tc.wantPeers[i].RouterID.IsValid() {
					tc.wantPeers[i].RouterID = netip.MustParseAddr("198.18.1.2") // the node's IPv4 address
				}
			}
			if got.Eligible != tc.wantElig {
				t.Errorf("Eligible = %v (%s), want %v", got.Eligible, got.Why, tc.wantElig)
			}
			opts := planOpts()
			checkPeersRoutes(t, got, tc.wantPeers, tc.wantRoutes)
			if diff := cmp.Diff(tc.wantForward, got.Forward, opts); diff != "" {
				t.Errorf("Forward (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantProblem, got.Problems, opts); diff != "" {
				t.Errorf("Problems (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantBroken, got.BrokenPeers, opts); diff != "" {
				t.Errorf("BrokenPeers (-want +got):\n%s", diff)
			}
		})
	}
}

func etpLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

func slice(svc, nodeName string, ready bool) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-" + nodeName,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"198.18.200.1"},
			NodeName:   &nodeName,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
	}
}

// planOpts compares plans: netip values by ==, nil and empty alike.
func planOpts() cmp.Option {
	return cmp.Options{cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })}
}

// checkPeersRoutes compares a plan's peers and routes with the wanted ones.
func checkPeersRoutes(t *testing.T, got *Plan, wantPeers []bgp.Peer, wantRoutes map[string][]bgp.Advertisement) {
	t.Helper()
	if diff := cmp.Diff(wantPeers, got.Peers, planOpts()); diff != "" {
		t.Errorf("Peers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantRoutes, got.Routes, planOpts()); diff != "" {
		t.Errorf("Routes (-want +got):\n%s", diff)
	}
}
