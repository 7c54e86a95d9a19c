package speaker

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/nodeport"
)

func l2adv(name string, mut ...func(*v1alpha1.BerthL2AdvertisementSpec)) *v1alpha1.BerthL2Advertisement {
	a := &v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, m := range mut {
		m(&a.Spec)
	}
	return a
}

func namedNode(name string, mut ...func(*corev1.Node)) *corev1.Node {
	return node(append([]func(*corev1.Node){func(n *corev1.Node) {
		n.Name = name
		n.Labels = map[string]string{"rack": "a", "name": name}
	}}, mut...)...)
}

func readyOn(svc string, nodes ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for _, n := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{NodeName: &n})
	}
	return es
}

// without returns names without drop.
func without(names []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == drop })
}

func TestComputeL2(t *testing.T) {
	addr := netip.MustParseAddr("198.51.100.5")
	addr6 := netip.MustParseAddr("2001:db8:100::5")
	all := []string{"n1", "n2", "n3"}
	base := func() Snapshot {
		n1 := namedNode("n1")
		return Snapshot{
			Node:     n1,
			Nodes:    []*corev1.Node{n1, namedNode("n2"), namedNode("n3")},
			Pools:    []*v1alpha1.BerthIPPool{pool("lan", "198.51.100.0/24", "2001:db8:100::/64"), pool("other", "203.0.113.0/24")},
			L2Advs:   []*v1alpha1.BerthL2Advertisement{l2adv("lan", func(s *v1alpha1.BerthL2AdvertisementSpec) { s.IPPools = []string{"lan"} })},
			Services: []*corev1.Service{lbService("web", []string{"198.51.100.5"})},
			L2:       L2View{Members: all, Quorate: true},
		}
	}
	owner := func(a netip.Addr, nodes ...string) string { return l2.Owner(a, nodes) }
	tests := []struct {
		name  string
		mut   func(*Snapshot)
		want  []L2Address
		owned bool // n1 answers for addr
	}{
		{
			name: "all nodes eligible; the owner is the hash over all",
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all, Owner: owner(addr, all...)}},
		},
		{
			name: "no BerthL2Advertisement: nothing",
			mut:  func(s *Snapshot) { s.L2Advs = nil },
		},
		{
			name: "an address of a pool no advertisement selects: nothing",
			mut:  func(s *Snapshot) { s.Services = []*corev1.Service{lbService("web", []string{"203.0.113.5"})} },
		},
		{
			name: "an address in no pool: nothing",
			mut:  func(s *Snapshot) { s.Services = []*corev1.Service{lbService("web", []string{"192.0.2.5"})} },
		},
		{
			name: "not a LoadBalancer: nothing",
			mut: func(s *Snapshot) {
				s.Services[0].Spec.Type = corev1.ServiceTypeClusterIP
			},
		},
		{
			name: "cordoned, excluded and not Ready nodes are not eligible",
			mut: func(s *Snapshot) {
				s.Nodes = []*corev1.Node{s.Node,
					namedNode("n2", func(n *corev1.Node) { n.Spec.Unschedulable = true }),
					namedNode("n3", func(n *corev1.Node) { n.Labels[ExcludeLabel] = "" }),
					namedNode("n4", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }),
				}
				s.L2.Members = []string{"n1", "n2", "n3", "n4"}
			},
			want:  []L2Address{{Addr: addr, Service: "default/web", Eligible: []string{"n1"}, Owner: "n1"}},
			owned: true,
		},
		{
			name: "only live members own: eligible but dead nodes do not",
			mut:  func(s *Snapshot) { s.L2.Members = []string{"n1"} },
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all, Owner: "n1"}},
			// n1 owns it by its own view, and is quorate.
			owned: true,
		},
		{
			name: "without quorum the node answers for nothing it owns",
			mut:  func(s *Snapshot) { s.L2 = L2View{Members: []string{"n1"}, Quorate: false} },
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all, Owner: "n1"}},
		},
		{
			name: "membership not running: no owner",
			mut:  func(s *Snapshot) { s.L2 = L2View{} },
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all}},
		},
		{
			name: "nodeSelector narrows eligibility; advertisements add up",
			mut: func(s *Snapshot) {
				sel := &metav1.LabelSelector{MatchLabels: map[string]string{"name": "n2"}}
				s.L2Advs = []*v1alpha1.BerthL2Advertisement{
					l2adv("a", func(a *v1alpha1.BerthL2AdvertisementSpec) { a.NodeSelector = sel; a.Interfaces = []string{"eth*"} }),
					l2adv("b", func(a *v1alpha1.BerthL2AdvertisementSpec) {
						a.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"name": "n3"}}
						a.Interfaces = []string{"bond0", "eth*"}
					}),
				}
			},
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: []string{"n2", "n3"}, Interfaces: []string{"bond0", "eth*"}, Owner: owner(addr, "n2", "n3")}},
		},
		{
			name: "an advertisement without interfaces means all interfaces",
			mut: func(s *Snapshot) {
				s.L2Advs = append(s.L2Advs, l2adv("eth", func(a *v1alpha1.BerthL2AdvertisementSpec) { a.Interfaces = []string{"eth0"} }))
			},
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all, Owner: owner(addr, all...)}},
		},
		{
			name: "serviceSelector and ipPoolSelector must match",
			mut: func(s *Snapshot) {
				s.L2Advs = []*v1alpha1.BerthL2Advertisement{
					l2adv("svc", func(a *v1alpha1.BerthL2AdvertisementSpec) {
						a.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
					}),
					l2adv("pool", func(a *v1alpha1.BerthL2AdvertisementSpec) {
						a.IPPoolSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "other"}}
					}),
				}
			},
		},
		{
			name: "externalTrafficPolicy Local: only nodes with a ready endpoint",
			mut: func(s *Snapshot) {
				s.Services[0].Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				notReady := readyOn("web", "n3")
				notReady.Name = "web-y"
				f := false
				notReady.Endpoints[0].Conditions.Ready = &f
				s.Slices = []*discoveryv1.EndpointSlice{readyOn("web", "n2"), notReady}
			},
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: []string{"n2"}, Owner: "n2"}},
		},
		{
			name: "externalTrafficPolicy Local without endpoints: nobody answers",
			mut: func(s *Snapshot) {
				s.Services[0].Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			},
			want: []L2Address{{Addr: addr, Service: "default/web"}},
		},
		{
			name: "a node that cannot forward the address is no candidate for it",
			mut: func(s *Snapshot) {
				s.CannotForward = map[string]map[netip.Addr]bool{owner(addr, all...): {addr: true}}
			},
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all,
				Withheld: []string{owner(addr, all...)}, Owner: owner(addr, without(all, owner(addr, all...))...)}},
		},
		{
			name: "this node cannot forward it: another owns it, this node retries",
			mut: func(s *Snapshot) {
				s.CannotForward = map[string]map[netip.Addr]bool{"n1": {addr: true}, "n2": {addr6: true}}
			},
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all, Withheld: []string{"n1"}, Owner: owner(addr, "n2", "n3")}},
		},
		{
			name: "every candidate withholds it: nobody owns it",
			mut: func(s *Snapshot) {
				s.CannotForward = map[string]map[netip.Addr]bool{"n1": {addr: true}, "n2": {addr: true}, "n3": {addr: true}}
			},
			want: []L2Address{{Addr: addr, Service: "default/web", Eligible: all, Withheld: all}},
		},
		{
			name: "what a dead or ineligible node withholds does not matter",
			mut: func(s *Snapshot) {
				s.L2.Members = []string{"n1", "n2"}
				s.Nodes[1].Spec.Unschedulable = true
				s.CannotForward = map[string]map[netip.Addr]bool{"n2": {addr: true}, "n3": {addr: true}}
			},
			want:  []L2Address{{Addr: addr, Service: "default/web", Eligible: []string{"n1", "n3"}, Owner: "n1"}},
			owned: true,
		},
		{
			name: "IPv6 too, sorted by address; a shared address is listed once",
			mut: func(s *Snapshot) {
				s.Services = []*corev1.Service{
					lbService("web", []string{"2001:db8:100::5", "198.51.100.5"}),
					lbService("web2", []string{"198.51.100.5"}),
				}
			},
			want: []L2Address{
				{Addr: addr, Service: "default/web", Eligible: all, Owner: owner(addr, all...)},
				{Addr: addr6, Service: "default/web", Eligible: all, Owner: owner(addr6, all...)},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			if tc.mut != nil {
				tc.mut(&s)
			}
			p := Compute(s)
			if diff := cmp.Diff(tc.want, p.L2, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("L2 (-want +got):\n%s", diff)
			}
			var wantOwned []netip.Addr
			for _, e := range tc.want {
				if e.Owner == "n1" && s.L2.Quorate && (tc.owned || e.Addr != addr) {
					wantOwned = append(wantOwned, e.Addr)
				}
			}
			if diff := cmp.Diff(wantOwned, p.L2Owned, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("L2Owned (-want +got):\n%s", diff)
			}
			var wantRetry []netip.Addr
			for _, e := range tc.want {
				if slices.Contains(e.Withheld, "n1") {
					wantRetry = append(wantRetry, e.Addr)
				}
			}
			if diff := cmp.Diff(wantRetry, p.L2Retry, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("L2Retry (-want +got):\n%s", diff)
			}
			if len(wantRetry) > 0 && !slices.ContainsFunc(p.Forward, func(r nodeport.Rule) bool { return r.Address == addr }) {
				t.Errorf("Forward %v: the retried address is not forwarded", p.Forward)
			}
		})
	}
}

// TestComputeL2Forward checks that owned addresses are forwarded, and only
// those.
func TestComputeL2Forward(t *testing.T) {
	n1 := namedNode("n1")
	s := Snapshot{
		Node:     n1,
		Nodes:    []*corev1.Node{n1},
		Pools:    []*v1alpha1.BerthIPPool{pool("lan", "198.51.100.0/24")},
		L2Advs:   []*v1alpha1.BerthL2Advertisement{l2adv("all")},
		Services: []*corev1.Service{lbService("web", []string{"198.51.100.5"})},
		L2:       L2View{Members: []string{"n1"}, Quorate: true},
	}
	p := Compute(s)
	want := []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2")}
	if diff := cmp.Diff(want, p.Forward, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("Forward (-want +got):\n%s", diff)
	}
	s.L2.Quorate = false
	if p := Compute(s); len(p.Forward) != 0 {
		t.Errorf("Forward without quorum: %v", p.Forward)
	}
}

type fakeMembers struct{ known []string }

func (fakeMembers) Members() []string         { return nil }
func (f fakeMembers) Known() []string         { return f.known }
func (fakeMembers) Lease() (uint64, bool)     { return 1, true }
func (f *fakeMembers) Forget(names ...string) {}

// TestAnswerSet checks the handover: a planned move keeps the address for
// the handover, a membership move or a lost quorum drops it at once.
func TestAnswerSet(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.5")
	now := time.Unix(1000, 0)
	tests := []struct {
		name     string
		plan     Plan
		after    time.Duration // since the loss
		want     bool
		wantNext time.Duration
	}{
		{name: "still owned", plan: Plan{L2Quorate: true, L2Owned: []netip.Addr{a}, L2: []L2Address{{Addr: a, Eligible: []string{"n1"}, Owner: "n1"}}}, want: true},
		{name: "planned move: kept during the handover", plan: Plan{L2Quorate: true, L2: []L2Address{{Addr: a, Eligible: []string{"n2"}, Owner: "n2"}}}, want: true, wantNext: time.Second},
		{name: "planned move: dropped after the handover", plan: Plan{L2Quorate: true, L2: []L2Address{{Addr: a, Eligible: []string{"n2"}, Owner: "n2"}}}, after: time.Second},
		{name: "membership move: dropped at once", plan: Plan{L2Quorate: true, L2: []L2Address{{Addr: a, Eligible: []string{"n1", "n2"}, Owner: "n2"}}}},
		{name: "quorum lost: dropped at once", plan: Plan{L2Quorate: false, L2: []L2Address{{Addr: a, Eligible: []string{"n2"}, Owner: "n2"}}}},
		{name: "no new owner: dropped at once", plan: Plan{L2Quorate: true, L2: []L2Address{{Addr: a}}}},
		{name: "address gone: dropped at once", plan: Plan{L2Quorate: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newL2State(&fakeMembers{}, nil, time.Second)
			st.owned = map[netip.Addr]bool{a: true}
			got, next := st.answerSet("n1", &tc.plan, now)
			if tc.after > 0 {
				st.owned = got
				got, next = st.answerSet("n1", &tc.plan, now.Add(tc.after))
			}
			if got[a] != tc.want || next != tc.wantNext {
				t.Errorf("answers %v (next %v), want %v (next %v)", got[a], next, tc.want, tc.wantNext)
			}
		})
	}
}
