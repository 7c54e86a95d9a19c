package aws_test

import (
	"net/netip"
	"slices"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	gocmp "github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestEC2EventualConsistency: EC2 shows new security groups, new rules,
// new associations and new tags late (here for 2 or 3 describes). Before,
// Berth then left a narrowed NLB open to the old ranges, leaked a new
// security group at Delete, took its own new group for another's after a
// restart, placed an Elastic IP twice (leaking a secondary address), and
// reported a node it passed over instead of asking for a retry.
func TestEC2EventualConsistency(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay int
		run   func(t *testing.T, l *lab)
	}{
		{name: "source ranges narrowed while the last change is not shown", delay: 3, run: func(t *testing.T, l *lab) {
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000701")
			for _, ranges := range [][]string{nil, {"192.0.2.0/24", "198.51.100.0/24"}, {"192.0.2.0/24"}} {
				svc.Spec.LoadBalancerSourceRanges = ranges
				l.ensureActive(svc, []*v1.Node{n1})
				s := l.srv.Snapshot()
				want := ranges
				if want == nil {
					want = []string{"0.0.0.0/0"}
				}
				var got []string
				for _, r := range group(s, s.LoadBalancers[0].SecurityGroups[0]).Ingress {
					got = append(got, r.CIDR)
				}
				slices.Sort(got)
				if got = slices.Compact(got); !gocmp.Equal(got, want) {
					t.Errorf("ranges %v: the NLB's group admits %v", ranges, got)
				}
			}
		}},
		{name: "Delete right after the security group was made", delay: 3, run: func(t *testing.T, l *lab) {
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000702")
			if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err == nil {
				t.Fatal("Ensure succeeded although ELB cannot see the new security group yet")
			}
			if err := l.delete(svc); err != nil {
				t.Fatal(err)
			}
			if s := l.srv.Snapshot(); len(s.SecurityGroups)+len(s.LoadBalancers) != 0 {
				t.Errorf("left after Delete: %+v %+v", s.SecurityGroups, s.LoadBalancers)
			}
		}},
		{name: "restart while the listing by tags does not show the new group", delay: 2, run: func(t *testing.T, l *lab) {
			n1 := l.addNode("n1", "i-1", "198.18.0.11")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000703")
			if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err == nil {
				t.Fatal("Ensure succeeded although ELB cannot see the new security group yet")
			}
			l.restart()
			l.ensureActive(svc, []*v1.Node{n1})
			if s := l.srv.Snapshot(); len(s.SecurityGroups) != 1 || len(s.LoadBalancers) != 1 {
				t.Errorf("%d security groups and %d NLBs, want 1 and 1", len(s.SecurityGroups), len(s.LoadBalancers))
			}
		}},
		{name: "Elastic IP placed, moved and given back while EC2 shows it late", delay: 3, run: func(t *testing.T, l *lab) {
			l.addNode("n1", "i-1", "198.18.0.11")
			l.addNode("n2", "i-2", "198.18.0.12")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000704", eipMode)
			st, err := l.ensure(svc, l.kube.list())
			if err != nil {
				t.Fatal(err)
			}
			first, _ := l.mapping(st.Ingress[0].IP)
			if _, err := l.ensure(svc, l.kube.list()); err != nil {
				t.Fatal(err)
			}
			if n := secondaries(l.srv.Snapshot()); n != 1 {
				t.Errorf("%d secondary addresses after a second Ensure, want 1", n)
			}
			l.kube.update(first, func(n *v1.Node) { n.Spec.Unschedulable = true })
			if _, err := l.ensure(svc, l.kube.list()); err != nil {
				t.Fatal(err)
			}
			if now, _ := l.mapping(st.Ingress[0].IP); now == first || secondaries(l.srv.Snapshot()) != 1 {
				t.Errorf("after the move: on %s with %d secondary addresses; want the other node, 1", now, secondaries(l.srv.Snapshot()))
			}
			if err := l.delete(svc); err != nil {
				t.Fatal(err)
			}
			if s := l.srv.Snapshot(); len(s.Addresses) != 0 || secondaries(s) != 0 {
				t.Errorf("after Delete: %d addresses, %d secondary addresses", len(s.Addresses), secondaries(s))
			}
		}},
		{name: "a node passed over, then the new Elastic IP not shown yet", delay: 3, run: func(t *testing.T, l *lab) {
			for k, full := range []string{"n1", "n2"} {
				enis := map[string]string{}
				for i, n := range []string{"n1", "n2"} {
					id := "i-" + full + n
					enis[n] = l.srv.AddInstance(id, "subnet-a", netip.AddrFrom4([4]byte{198, 18, 0, byte(201 + 2*k + i)}).String())
					l.srv.TagInstance(id, map[string]string{"kubernetes.io/cluster/prod": "owned"})
					l.kube.put(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: v1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + id},
						Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}}})
				}
				// Another agent's secondary address: Berth passes the node over.
				if _, err := l.ec2.AssignPrivateIpAddresses(l.ctx, &ec2.AssignPrivateIpAddressesInput{
					NetworkInterfaceId: sdk.String(enis[full]), SecondaryPrivateIpAddressCount: sdk.Int32(1)}); err != nil {
					t.Fatal(err)
				}
				svc := service("svc-"+full, "0c4b7f3e-aaaa-bbbb-cccc-00000000070"+full[1:], eipMode)
				st, err := l.ensure(svc, l.kube.list())
				if err != nil {
					t.Fatalf("%s full: %v", full, err)
				}
				if node, _ := l.mapping(st.Ingress[0].IP); node == full {
					t.Errorf("mapped to %s, which another agent manages", node)
				}
				if err := l.delete(svc); err != nil {
					t.Fatal(err)
				}
				l.kube.remove("n1")
				l.kube.remove("n2")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.srv.SetSecurityGroupVisibilityDelay(tc.delay)
			l.srv.SetAddressVisibilityDelay(tc.delay)
			l.srv.SetEC2ChangeVisibilityDelay(tc.delay)
			tc.run(t, l)
		})
	}
}
