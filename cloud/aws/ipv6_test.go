package aws_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// addIPv6 gives a node an IPv6 InternalIP and, unless onInstance is "",
// its instance an IPv6 address (the same or another).
func (l *lab) addIPv6(n *v1.Node, instance, internalIP, onInstance string) {
	if onInstance != "" {
		l.srv.AddInstanceIPv6(instance, onInstance, false)
	}
	n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: internalIP})
	l.kube.put(n)
}

// TestNLBIPv6Targets: a Service whose primary family is IPv6 gets IPv6
// target groups of the nodes' IPv6 InternalIPs (ip targets), behind a
// dualstack NLB that can forward UDP over IPv6; an IPv4-primary
// dual-stack Service keeps IPv4 instance targets. Before, an IPv6-only
// Service was refused, and an IPv6-primary one sent IPv6 clients' traffic
// to IPv4 NodePorts that kube-proxy does not serve for it.
func TestNLBIPv6Targets(t *testing.T) {
	v6first := []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}
	for _, tc := range []struct {
		name        string
		families    []v1.IPFamily
		wantType    string // TargetType/IpAddressType of every group
		wantTargets []string
	}{
		{name: "IPv6-only", families: []v1.IPFamily{v1.IPv6Protocol}, wantType: "ip/ipv6",
			wantTargets: []string{"2001:db8:0:1::11", "2001:db8:0:1::13"}},
		{name: "dual-stack, IPv6 first", families: v6first, wantType: "ip/ipv6",
			wantTargets: []string{"2001:db8:0:1::11", "2001:db8:0:1::13"}},
		{name: "dual-stack, IPv4 first", families: []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}, wantType: "instance/ipv4",
			wantTargets: []string{"i-1", "i-2", "i-3", "i-4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			l.addIPv6(n1, "i-1", "2001:db8:0:1::11", "2001:db8:0:1::11")
			// n2's InternalIP is not its instance's: not a target.
			n2 := l.addNode("n2", "i-2", "198.18.0.12")
			l.addIPv6(n2, "i-2", "2001:db8:0:1::12", "2001:db8:0:1::99")
			// n3 is written in another form of the same address.
			n3 := l.addNode("n3", "i-3", "198.18.0.13")
			l.addIPv6(n3, "i-3", "2001:0db8:0:1:0:0:0:13", "2001:db8:0:1::13")
			// n4 has no IPv6 address at all.
			l.addNode("n4", "i-4", "198.18.0.14")
			nodes := l.kube.list()
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000061", func(s *v1.Service) { s.Spec.IPFamilies = tc.families })
			l.ensureActive(svc, nodes)
			s := l.srv.Snapshot()
			if len(s.LoadBalancers) != 1 || s.LoadBalancers[0].IPAddressType != "dualstack" || !s.LoadBalancers[0].SourceNATIPv6 {
				t.Fatalf("load balancers %+v, want one dualstack with IPv6 source NAT", s.LoadBalancers)
			}
			if len(s.TargetGroups) != 2 || len(s.Listeners) != 2 {
				t.Fatalf("%d target groups and %d listeners, want 2 and 2 (TCP 80, UDP 53)", len(s.TargetGroups), len(s.Listeners))
			}
			for _, tg := range s.TargetGroups {
				if got := tg.TargetType + "/" + tg.IPAddressType; got != tc.wantType {
					t.Errorf("group %s is %s, want %s", tg.Name, got, tc.wantType)
				}
				if d := cmp.Diff(tc.wantTargets, targetsOf(tg)); d != "" {
					t.Errorf("targets of %s (-want +got):\n%s", tg.Name, d)
				}
			}
			// A node that goes leaves the groups; Delete removes all.
			l.kube.remove("n1")
			if err := l.update(svc, l.kube.list()); err != nil {
				t.Fatal(err)
			}
			for _, tg := range l.srv.Snapshot().TargetGroups {
				if ids := targetsOf(tg); len(ids) != len(tc.wantTargets)-1 || slices.Contains(ids, tc.wantTargets[0]) {
					t.Errorf("targets of %s after n1 left: %v", tg.Name, ids)
				}
			}
			if err := l.delete(svc); err != nil {
				t.Fatal(err)
			}
			checkNothingLeft(t, l, l.srv.Snapshot())
		})
	}
}

// TestNLBIPv6GroupsReplaceIPv4Groups: a Service whose primary family is
// IPv6 and that an earlier Berth served with IPv4 instance groups (it
// made those for every family) gets IPv6 groups, and the old ones go.
func TestNLBIPv6GroupsReplaceIPv4Groups(t *testing.T) {
	l := newLab(t)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	l.addIPv6(n1, "i-1", "2001:db8:0:1::11", "2001:db8:0:1::11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000062", func(s *v1.Service) {
		s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	})
	l.ensureActive(svc, l.kube.list())
	before := l.srv.Snapshot().TargetGroups
	svc.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}
	l.ensureActive(svc, l.kube.list())
	var got []awsdouble.TargetGroup
	for range 5 { // the old groups are in use for a while after the switch
		l.ensureActive(svc, l.kube.list())
		if got = l.srv.Snapshot().TargetGroups; len(got) == 2 {
			break
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d target groups after the switch, want 2", len(got))
	}
	for _, tg := range got {
		if tg.TargetType != "ip" || tg.IPAddressType != "ipv6" || slices.ContainsFunc(before, func(old awsdouble.TargetGroup) bool { return old.Name == tg.Name }) {
			t.Errorf("group %s after the switch: %s/%s", tg.Name, tg.TargetType, tg.IPAddressType)
		}
	}
}
