package speaker

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/nodeport"
)

// fakeForwarder records what the speaker asks of the nftables back end.
type fakeForwarder struct {
	rules    []nodeport.Rule
	synced   int
	cleanups int
}

func (f *fakeForwarder) Sync(_ context.Context, rules []nodeport.Rule) error {
	f.rules, f.synced = rules, f.synced+1
	return nil
}
func (f *fakeForwarder) Check(context.Context) (bool, error) { return false, nil }
func (f *fakeForwarder) Cleanup(context.Context) error       { f.cleanups++; f.rules = nil; return nil }

func TestApplyForwardingHandover(t *testing.T) {
	cordoned := node(func(n *corev1.Node) { n.Spec.Unschedulable = true })
	snap := Snapshot{Node: cordoned, Services: []*corev1.Service{lbService("web", []string{"198.51.100.5"})}}
	addr := netip.MustParseAddr("198.51.100.5")
	tests := []struct {
		name         string
		answering    map[netip.Addr]bool
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeForwarder{}
			s := &Speaker{fwd: f, forwarded: true}
			plan := Compute(snap)
			if plan.Eligible {
				t.Fatal("a cordoned node must not be eligible")
			}
			if err := s.applyForwarding(t.Context(), snap, plan, tc.answering); err != nil {
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
