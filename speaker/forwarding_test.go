package speaker

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
}

func (f *fakeForwarder) Sync(_ context.Context, rules []nodeport.Rule) error {
	f.rules, f.synced = rules, f.synced+1
	return nil
}
func (f *fakeForwarder) Check(context.Context) (bool, error) { return false, nil }
func (f *fakeForwarder) Cleanup(context.Context) error       { f.cleanups++; f.rules = nil; return nil }
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
			if err := s.applyForwarding(t.Context(), snap, plan, tc.answering, nil); err != nil {
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
	if err := s.applyForwarding(t.Context(), snap, plan, nil, map[netip.Addr]netip.Addr{addr: via}); err != nil {
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
