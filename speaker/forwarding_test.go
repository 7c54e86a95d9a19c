package speaker

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/nodeport"
)

// fakeForwarder records what the speaker asks of the nftables back end.
type fakeForwarder struct {
	rules    []nodeport.Rule
	synced   int
	cleanups int
	drain    []netip.Addr
	syncErr  error
	// membersPort and members are what Members was last given.
	membersPort nodeport.MembersPort
	members     []netip.Addr
}

func (f *fakeForwarder) Sync(_ context.Context, rules []nodeport.Rule) error {
	f.rules, f.synced = rules, f.synced+1
	return f.syncErr
}
func (f *fakeForwarder) Check(context.Context) (bool, error) { return false, nil }
func (f *fakeForwarder) Cleanup(context.Context) error       { f.cleanups++; f.rules = nil; return nil }
func (f *fakeForwarder) Members(_ context.Context, port nodeport.MembersPort, addrs []netip.Addr) error {
	f.membersPort, f.members = port, addrs
	return nil
}

func (f *fakeForwarder) Drain(_ context.Context, addrs []netip.Addr) error {
	f.drain = addrs
	return nil
}

// fakeRoutes records the drain routes the speaker asks for.
type fakeRoutes struct{ routes map[netip.Addr]netip.Addr }

func (r *fakeRoutes) Set(routes map[netip.Addr]netip.Addr) error {
	r.routes = routes
	return nil
}

func TestApplyForwardingHandover(t *testing.T) {
	cordoned := node(func(n *corev1.Node) { n.Spec.Unschedulable = true })
	snap := Snapshot{Node: cordoned, Services: []*corev1.Service{lbService("web", []string{"198.51.100.5"})}}
	addr := netip.MustParseAddr("198.51.100.5")
	tests := []struct {
		name         string
		answering    map[netip.Addr]bool
		drainFor     time.Duration
		keepTable    time.Duration // from now
		wantRules    []nodeport.Rule
		wantCleanups int
	}{
		{
			name:      "a cordoned owner still answering during the handover keeps forwarding",
			answering: map[netip.Addr]bool{addr: true},
			wantRules: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2")},
		},
		{
			name:         "after the handover the table goes",
			answering:    map[netip.Addr]bool{},
			wantCleanups: 1,
		},
		{
			name:      "a cordoned owner keeps forwarding during the handover, draining on",
			answering: map[netip.Addr]bool{addr: true},
			drainFor:  30 * time.Second,
			wantRules: []nodeport.Rule{rule("198.51.100.5", 80, 30080, "198.18.1.2")},
		},
		{
			name:      "after the handover the table stays, empty, while the new owner may drain to it",
			answering: map[netip.Addr]bool{},
			drainFor:  30 * time.Second,
			keepTable: 29 * time.Second,
		},
		{
			name:         "and goes after that",
			answering:    map[netip.Addr]bool{},
			drainFor:     30 * time.Second,
			keepTable:    -time.Second,
			wantCleanups: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeForwarder{}
			s := &Speaker{fwd: f, drainFor: tc.drainFor, keepTable: time.Now().Add(tc.keepTable),
				queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
			s.forwarded.Store(true)
			defer s.queue.ShutDown()
			plan := Compute(snap)
			if plan.Eligible {
				t.Fatal("a cordoned node must not be eligible")
			}
			if _, err := s.applyForwarding(t.Context(), snap, plan, tc.answering, nil); err != nil {
				t.Fatal(err)
			}
			opts := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
			if diff := cmp.Diff(tc.wantRules, f.rules, opts); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			if f.cleanups != tc.wantCleanups {
				t.Errorf("cleanups = %d, want %d", f.cleanups, tc.wantCleanups)
			}
		})
	}
}

// TestApplyForwardingDrain checks that the drains reach the routes and the
// drain sets.
func TestApplyForwardingDrain(t *testing.T) {
	snap := Snapshot{Node: node(), Services: []*corev1.Service{lbService("web", []string{"198.51.100.5"})}}
	addr, via := netip.MustParseAddr("198.51.100.5"), netip.MustParseAddr("198.18.1.3")
	f, r := &fakeForwarder{}, &fakeRoutes{}
	s := &Speaker{fwd: f, routes: r}
	plan := Compute(snap)
	if _, err := s.applyForwarding(t.Context(), snap, plan, nil, map[netip.Addr]netip.Addr{addr: via}); err != nil {
		t.Fatal(err)
	}
	opts := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if diff := cmp.Diff([]netip.Addr{addr}, f.drain, opts); diff != "" {
		t.Errorf("drain set (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[netip.Addr]netip.Addr{addr: via}, r.routes, opts); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

// TestForwardingSourceRanges checks that a Service's source ranges reach
// its rules, from the spec or else the annotation, and that ranges that do
// not parse refuse every client and are reported.
func TestForwardingSourceRanges(t *testing.T) {
	addr := netip.MustParseAddr("198.51.100.5")
	p := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, c := range s {
			out = append(out, netip.MustParsePrefix(c))
		}
		return out
	}
	tests := []struct {
		name           string
		spec           []string
		annotation     string
		wantRestricted bool
		wantRanges     []netip.Prefix
		wantProblem    string
	}{
		{name: "none"},
		{name: "spec", spec: []string{"203.0.113.0/24", " 2001:db8::/32"}, wantRestricted: true, wantRanges: p("203.0.113.0/24", "2001:db8::/32")},
		{name: "annotation", annotation: "203.0.113.0/24, 192.0.2.7/32", wantRestricted: true, wantRanges: p("203.0.113.0/24", "192.0.2.7/32")},
		{name: "spec wins", spec: []string{"203.0.113.0/24"}, annotation: "0.0.0.0/0", wantRestricted: true, wantRanges: p("203.0.113.0/24")},
		{name: "unparsable: nobody", spec: []string{"203.0.113.0/24", "not-a-cidr"}, wantRestricted: true, wantProblem: `"not-a-cidr"`},
		{name: "unparsable annotation: nobody", annotation: "10.0.0.1", wantRestricted: true, wantProblem: `"10.0.0.1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := lbService("web", []string{addr.String()})
			svc.Spec.LoadBalancerSourceRanges = tc.spec
			if tc.annotation != "" {
				svc.Annotations = map[string]string{corev1.AnnotationLoadBalancerSourceRangesKey: tc.annotation}
			}
			plan := &Plan{Problems: map[string]string{}}
			rules := plan.forwarding(Snapshot{Node: node(), Services: []*corev1.Service{svc}}, map[netip.Addr]bool{addr: true}, false)
			if len(rules) != 1 {
				t.Fatalf("rules = %v, want one", rules)
			}
			r := rules[0]
			opts := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
			if r.Restricted != tc.wantRestricted || !cmp.Equal(r.SourceRanges, tc.wantRanges, opts, cmpopts.EquateEmpty()) {
				t.Errorf("rule restricted %v to %v, want %v to %v", r.Restricted, r.SourceRanges, tc.wantRestricted, tc.wantRanges)
			}
			if got := plan.Problems["Service/default/web"]; !strings.Contains(got, tc.wantProblem) || (tc.wantProblem == "") != (got == "") {
				t.Errorf("problem %q, want one naming %s", got, tc.wantProblem)
			}
		})
	}
}

// TestPlanMembers checks that the membership port's allowed sources are
// every Node's addresses.
func TestPlanMembers(t *testing.T) {
	other := node(func(n *corev1.Node) {
		n.Name = "other"
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.1.9"},
			{Type: corev1.NodeExternalIP, Address: "203.0.113.9"}, {Type: corev1.NodeHostName, Address: "other"}}
	})
	self := node()
	plan := Compute(Snapshot{Node: self, Nodes: []*corev1.Node{self, other}})
	var want []netip.Addr
	for _, a := range self.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			want = append(want, ip)
		}
	}
	want = append(want, netip.MustParseAddr("198.18.1.9"), netip.MustParseAddr("203.0.113.9"))
	slices.SortFunc(want, netip.Addr.Compare)
	if diff := cmp.Diff(want, plan.Members, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
}

// TestApplyForwardingRefused checks that a Sync that left rules out (the
// rest programmed) fails the sync, so that it is retried, and still counts
// the table as written, so that drift checks and its removal happen.
func TestApplyForwardingRefused(t *testing.T) {
	for _, err := range []error{&nodeport.RefusedError{Err: errors.New("injected")}, &nodeport.InvalidRuleError{Reason: "injected"}} {
		snap := Snapshot{Node: node(), Services: []*corev1.Service{lbService("web", []string{"198.51.100.5"})}}
		f := &fakeForwarder{syncErr: err}
		s := &Speaker{fwd: f}
		if _, got := s.applyForwarding(t.Context(), snap, Compute(snap), nil, nil); !errors.Is(got, err) {
			t.Errorf("applyForwarding = %v, want %v", got, err)
		}
		if !s.forwarded.Load() {
			t.Errorf("%T: the table is not counted as written", err)
		}
	}
}

// TestApplyForwardingKeepsMembersTable checks that a node that is not
// eligible and forwards nothing keeps its table when the table guards the
// membership port, and still restricts the port.
func TestApplyForwardingKeepsMembersTable(t *testing.T) {
	cordoned := node(func(n *corev1.Node) { n.Spec.Unschedulable = true })
	snap := Snapshot{Node: cordoned, Nodes: []*corev1.Node{cordoned}}
	f := &fakeForwarder{}
	s := &Speaker{fwd: f, membersPort: nodeport.MembersPort{Port: 7946, Protocols: []nodeport.Protocol{nodeport.TCP, nodeport.UDP}}}
	s.forwarded.Store(true)
	plan := Compute(snap)
	if _, err := s.applyForwarding(t.Context(), snap, plan, nil, nil); err != nil {
		t.Fatal(err)
	}
	if f.cleanups != 0 || f.synced != 1 || len(f.rules) != 0 {
		t.Errorf("cleanups %d, syncs %d, rules %v; want the table kept, synced without rules", f.cleanups, f.synced, f.rules)
	}
	if len(f.members) == 0 || f.membersPort.Port != 7946 {
		t.Errorf("membership port %v restricted to %v, want 7946 and the node's addresses", f.membersPort, f.members)
	}
}
