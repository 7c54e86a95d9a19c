package aws_test

import (
	"net/netip"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

var eipMode = annotate(v1alpha1.AnnotationAWSMode, aws.ModeEIP)

// mapping returns where the Service's Elastic IP points: the node whose
// interface holds the private address, and that address.
func (l *lab) mapping(public string) (node, private string) {
	l.t.Helper()
	s := l.srv.Snapshot()
	for _, a := range s.Addresses {
		if a.PublicIP != public {
			continue
		}
		for _, n := range l.kube.list() {
			if strings.HasSuffix(n.Spec.ProviderID, "/"+a.InstanceID) {
				return n.Name, a.PrivateIP
			}
		}
		l.t.Fatalf("Elastic IP %s is associated with unknown instance %q", public, a.InstanceID)
	}
	l.t.Fatalf("no Elastic IP %s", public)
	return "", ""
}

// secondaries counts the secondary private addresses over all interfaces.
func secondaries(s awsdouble.State) int {
	n := 0
	for _, ni := range s.NetworkInterfaces {
		n += len(ni.PrivateIPs) - 1
	}
	return n
}

func TestEIPLifecycle(t *testing.T) {
	l := newLab(t)
	l.addNode("n1", "i-1", "198.18.0.11")
	l.addNode("n2", "i-2", "198.18.0.12")
	l.addNode("n3", "i-3", "198.18.0.13")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000010", eipMode)

	st, err := l.ensure(svc, l.kube.list())
	if err != nil {
		t.Fatal(err)
	}
	public := st.Ingress[0].IP
	if a, err := netip.ParseAddr(public); err != nil || !netip.MustParsePrefix("203.0.113.0/24").Contains(a) {
		t.Fatalf("status %+v: want an Elastic IP", st)
	}
	owner, private := l.mapping(public)
	key := v1alpha1.NodeAnnotationForwardPrefix + private
	if got := l.kube.annotations(); !cmp.Equal(got, map[string]map[string]string{owner: {key: "default/web"}}) {
		t.Errorf("node annotations %v, want %s on %s only", got, key, owner)
	}
	addr := l.srv.Snapshot().Addresses[0]
	if addr.Tags[aws.TagAllocated] != "true" || addr.Tags[aws.TagServiceUID] != string(svc.UID) {
		t.Errorf("Elastic IP tags %v", addr.Tags)
	}

	// Idempotent: nothing is allocated, assigned, associated or patched again.
	calls := func() []int {
		return []int{l.srv.Calls("AllocateAddress"), l.srv.Calls("AssignPrivateIpAddresses"), l.srv.Calls("AssociateAddress"), l.kube.patches}
	}
	before := calls()
	if st2, err := l.ensure(svc, l.kube.list()); err != nil || st2.Ingress[0].IP != public {
		t.Fatalf("second Ensure = %+v, %v", st2, err)
	}
	if got := calls(); !cmp.Equal(got, before) {
		t.Errorf("second Ensure made calls: %v -> %v", before, got)
	}

	// The owner is cordoned: the Elastic IP moves, the old secondary
	// address and annotation go, the public address stays.
	l.kube.update(owner, func(n *v1.Node) { n.Spec.Unschedulable = true })
	if err := l.update(svc, l.kube.list()); err != nil {
		t.Fatal(err)
	}
	owner2, private2 := l.mapping(public)
	if owner2 == owner {
		t.Fatalf("Elastic IP stayed on cordoned %s", owner)
	}
	if got := l.kube.annotations(); !cmp.Equal(got, map[string]map[string]string{owner2: {v1alpha1.NodeAnnotationForwardPrefix + private2: "default/web"}}) {
		t.Errorf("after the move, annotations %v", got)
	}
	if n := secondaries(l.srv.Snapshot()); n != 1 {
		t.Errorf("%d secondary addresses after the move, want 1", n)
	}

	// The new owner's node is deleted: it moves again, to the last node.
	l.kube.remove(owner2)
	if _, err := l.ensure(svc, l.kube.list()); err != nil {
		t.Fatal(err)
	}
	if owner3, _ := l.mapping(public); owner3 == owner || owner3 == owner2 {
		t.Errorf("mapped to %s; want the remaining eligible node", owner3)
	}

	for range 2 {
		if err := l.delete(svc); err != nil {
			t.Fatal(err)
		}
	}
	s := l.srv.Snapshot()
	if len(s.Addresses) != 0 || secondaries(s) != 0 || len(l.kube.annotations()) != 0 {
		t.Errorf("after Delete: addresses %+v, %d secondaries, annotations %v", s.Addresses, secondaries(s), l.kube.annotations())
	}
	if _, ok, err := l.b.Get(l.ctx, svc); ok || err != nil {
		t.Errorf("Get after Delete = %v, %v", ok, err)
	}
}

// Elastic IPs from the operator's list are taken, then given back, never
// released; when the list is used up the error says so.
func TestEIPFromList(t *testing.T) {
	var ids []string
	l := newLab(t)
	ids = append(ids, l.srv.AddElasticIP("198.51.100.10", nil), l.srv.AddElasticIP("198.51.100.11", nil))
	l.b = mustBackend(t, l, func(c *aws.Config) { c.DefaultMode = aws.ModeEIP; c.EIP.AllocationIDs = ids })
	l.addNode("n1", "i-1", "198.18.0.11")
	a := service("a", "0c4b7f3e-aaaa-bbbb-cccc-000000000011")
	b := service("b", "0c4b7f3e-aaaa-bbbb-cccc-000000000012")
	c := service("c", "0c4b7f3e-aaaa-bbbb-cccc-000000000013")
	got := map[string]bool{}
	for _, svc := range []*v1.Service{a, b} {
		st, err := l.ensure(svc, l.kube.list())
		if err != nil {
			t.Fatal(err)
		}
		got[st.Ingress[0].IP] = true
	}
	if !cmp.Equal(got, map[string]bool{"198.51.100.10": true, "198.51.100.11": true}) {
		t.Errorf("addresses %v, want both listed ones", got)
	}
	if _, err := l.ensure(c, l.kube.list()); err == nil || !strings.Contains(err.Error(), "all 2 Elastic IPs") {
		t.Errorf("third Service: %v, want the list to be used up", err)
	}
	if err := l.delete(a); err != nil {
		t.Fatal(err)
	}
	if l.srv.Calls("AllocateAddress")+l.srv.Calls("ReleaseAddress") != 0 {
		t.Errorf("list mode allocated or released addresses")
	}
	if s := l.srv.Snapshot(); len(s.Addresses) != 2 {
		t.Errorf("addresses after Delete: %+v", s.Addresses)
	}
	st, err := l.ensure(c, l.kube.list())
	if err != nil {
		t.Fatalf("after a's address came back, c: %v", err)
	}
	for _, addr := range l.srv.Snapshot().Addresses {
		if addr.PublicIP == st.Ingress[0].IP && addr.Tags[aws.TagServiceUID] != string(c.UID) {
			t.Errorf("c's address carries tags %v", addr.Tags)
		}
	}
}

func mustBackend(t *testing.T, l *lab, mut func(*aws.Config)) *aws.Backend {
	t.Helper()
	cfg := aws.Config{ClusterName: "prod", MaxAttempts: 4}
	mut(&cfg)
	setDocPolicy(t, l.srv, cfg)
	b, err := aws.New(cfg, l.berthEC2, l.berthELB, l.b.Logger())
	if err != nil {
		t.Fatal(err)
	}
	b.SetKubernetes(l.kube, l.kube, l.kube)
	return b
}

func TestEIPErrorsAndRetries(t *testing.T) {
	l := newLab(t)
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000020", eipMode)

	// No eligible node: the address is held, the error says why.
	_, err := l.ensure(svc, nil)
	if err == nil || !strings.Contains(err.Error(), "no node can take it") {
		t.Fatalf("Ensure without nodes = %v", err)
	}
	l.addNode("n1", "i-1", "198.18.0.11")
	l.srv.FailNext("AssociateAddress", "RequestLimitExceeded", 2)
	st, err := l.ensure(svc, l.kube.list())
	if err != nil {
		t.Fatalf("Ensure with a node and throttling = %v", err)
	}
	if l.srv.Calls("AllocateAddress") != 1 {
		t.Errorf("allocated %d addresses, want the held one reused", l.srv.Calls("AllocateAddress"))
	}
	if node, _ := l.mapping(st.Ingress[0].IP); node != "n1" {
		t.Errorf("mapped to %s", node)
	}

	// A failure after the secondary address was assigned is resumed.
	l.addNode("n2", "i-2", "198.18.0.12")
	l.kube.update("n1", func(n *v1.Node) { n.Status.Conditions[0].Status = v1.ConditionFalse })
	l.srv.FailNext("AssociateAddress", "InvalidParameterCombination", 1)
	if _, err := l.ensure(svc, l.kube.list()); err == nil {
		t.Fatal("Ensure succeeded despite the injected failure")
	}
	if _, err := l.ensure(svc, l.kube.list()); err != nil {
		t.Fatal(err)
	}
	if node, _ := l.mapping(st.Ingress[0].IP); node != "n2" {
		t.Errorf("mapped to %s, want n2", node)
	}
	if n := secondaries(l.srv.Snapshot()); n != 1 {
		t.Errorf("%d secondary addresses, want 1: the failed attempt's address was reused", n)
	}

	for _, tc := range []struct {
		name, wantErr string
		mut           func(*v1.Service)
	}{
		{"IPv6-only", "IPv4 addresses only", func(s *v1.Service) { s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol} }},
		{"no NodePorts", "has no NodePort", func(s *v1.Service) { s.Spec.Ports[0].NodePort = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := service("bad", "0c4b7f3e-aaaa-bbbb-cccc-000000000021", eipMode, tc.mut)
			if _, err := l.ensure(bad, l.kube.list()); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Ensure = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// Switching a Service between modes removes what the other mode made.
func TestModeSwitch(t *testing.T) {
	l := newLab(t)
	l.srv.SetProvisioningDescribes(0)
	l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000030")
	l.ensureActive(svc, l.kube.list())
	eipMode(svc)
	if err := l.retry(func() error { _, err := l.b.Ensure(l.ctx, svc, l.kube.list()); return err }); err != nil {
		t.Fatal(err)
	}
	s := l.srv.Snapshot()
	if len(s.LoadBalancers)+len(s.TargetGroups) != 0 || len(s.Addresses) != 1 {
		t.Errorf("after switching to eip: %d NLBs, %d groups, %d addresses", len(s.LoadBalancers), len(s.TargetGroups), len(s.Addresses))
	}
	svc.Annotations[v1alpha1.AnnotationAWSMode] = aws.ModeNLB
	l.ensureActive(svc, l.kube.list())
	s = l.srv.Snapshot()
	if len(s.LoadBalancers) != 1 || len(s.Addresses) != 0 || secondaries(s) != 0 || len(l.kube.annotations()) != 0 {
		t.Errorf("after switching back: %d NLBs, %d addresses, %d secondaries, annotations %v", len(s.LoadBalancers), len(s.Addresses), secondaries(s), l.kube.annotations())
	}
}

// The Service and Nodes handed in come from the service controller's
// cache: no mode may change them.
func TestInputsNotMutated(t *testing.T) {
	for _, mode := range []string{aws.ModeNLB, aws.ModeEIP} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t)
			l.srv.SetProvisioningDescribes(0)
			l.addNode("n1", "i-1", "198.18.0.11")
			l.addNode("n2", "i-2", "198.18.0.12")
			svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000040", annotate(v1alpha1.AnnotationAWSMode, mode))
			nodes := l.kube.list()
			svcBefore := svc.DeepCopy()
			var nodesBefore []*v1.Node
			for _, n := range nodes {
				nodesBefore = append(nodesBefore, n.DeepCopy())
			}
			if _, err := l.ensure(svc, nodes); err != nil {
				t.Fatal(err)
			}
			if err := l.update(svc, nodes[:1]); err != nil {
				t.Fatal(err)
			}
			if err := l.delete(svc); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(svcBefore, svc); diff != "" {
				t.Errorf("Service changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(nodesBefore, nodes); diff != "" {
				t.Errorf("Nodes changed (-before +after):\n%s", diff)
			}
		})
	}
}

// externalTrafficPolicy Local: the Elastic IP goes to a node with a ready
// endpoint and follows the endpoints; with none left it stays put.
func TestEIPLocalTraffic(t *testing.T) {
	l := newLab(t)
	for i, n := range []string{"n1", "n2", "n3"} {
		l.addNode(n, "i-"+n, netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}).String())
	}
	local := func(s *v1.Service) { s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal }
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000050", eipMode, local)

	if _, err := l.ensure(svc, l.kube.list()); err == nil || !strings.Contains(err.Error(), "ready endpoint") {
		t.Fatalf("Ensure without endpoints = %v, want an error naming the missing endpoints", err)
	}
	for _, step := range []struct {
		endpoints []string
		want      string
	}{
		{[]string{"n2"}, "n2"},
		{[]string{"n2", "n3"}, "n2"}, // no move without cause
		{[]string{"n3"}, "n3"},
		{nil, "n3"}, // nowhere better: stays
		{[]string{"n1"}, "n1"},
	} {
		l.kube.setEndpoints("default/web", step.endpoints...)
		st, err := l.ensure(svc, l.kube.list())
		if err != nil {
			t.Fatalf("endpoints on %v: %v", step.endpoints, err)
		}
		if node, _ := l.mapping(st.Ingress[0].IP); node != step.want {
			t.Errorf("endpoints on %v: mapped to %s, want %s", step.endpoints, node, step.want)
		}
	}
	if n := secondaries(l.srv.Snapshot()); n != 1 {
		t.Errorf("%d secondary addresses after the moves, want 1", n)
	}
}

// A node whose interface holds no more addresses passes the Elastic IP on
// to the next node; when every interface is full the error says so. Each
// node is the full one in turn, so that the node ranked first is full in
// one of the cases.
func TestEIPFullInterface(t *testing.T) {
	for _, full := range []string{"n1", "n2"} {
		t.Run(full+" full", func(t *testing.T) {
			l := newLab(t)
			l.srv.SetPrivateIPLimit(2) // the primary and one secondary
			enis := map[string]string{}
			for i, n := range []string{"n1", "n2"} {
				enis[n] = l.srv.AddInstance("i-"+n, "subnet-a", netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}).String())
				l.srv.TagInstance("i-"+n, map[string]string{"kubernetes.io/cluster/prod": "owned"})
				l.kube.put(&v1.Node{
					ObjectMeta: metav1.ObjectMeta{Name: n},
					Spec:       v1.NodeSpec{ProviderID: "aws:///eu-west-1a/i-" + n},
					Status:     v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
				})
			}
			if _, err := l.ec2.AssignPrivateIpAddresses(l.ctx, &ec2.AssignPrivateIpAddressesInput{
				NetworkInterfaceId: sdk.String(enis[full]), SecondaryPrivateIpAddressCount: sdk.Int32(1),
			}); err != nil {
				t.Fatal(err)
			}
			st, err := l.ensure(service("a", "0c4b7f3e-aaaa-bbbb-cccc-000000000060", eipMode), l.kube.list())
			if err != nil {
				t.Fatal(err)
			}
			if node, _ := l.mapping(st.Ingress[0].IP); node == full {
				t.Errorf("mapped to %s, whose interface is full", node)
			}
			_, err = l.ensure(service("b", "0c4b7f3e-aaaa-bbbb-cccc-000000000061", eipMode), l.kube.list())
			if err == nil || !strings.Contains(err.Error(), "PrivateIpAddressLimitExceeded") {
				t.Errorf("with every interface full: %v", err)
			}
		})
	}
}

// EC2 may not show a new Elastic IP to describes for a while: the retries
// wait for it rather than allocate a second one.
func TestEIPAllocationNotDuplicated(t *testing.T) {
	l := newLab(t)
	l.srv.SetAddressVisibilityDelay(3)
	l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000501", eipMode)
	if _, err := l.ensure(svc, l.kube.list()); err != nil {
		t.Fatal(err)
	}
	if n, s := l.srv.Calls("AllocateAddress"), l.srv.Snapshot(); n != 1 || len(s.Addresses) != 1 {
		t.Errorf("%d allocations, %d addresses; want 1 and 1", n, len(s.Addresses))
	}
}

// Two Elastic IPs tagged for one Service (a retry that did not see the
// first, before a restart): the one in the Service's status stays, every
// time, and the other is given back.
func TestEIPDuplicateResolved(t *testing.T) {
	l := newLab(t)
	l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000502", eipMode)
	tags := map[string]string{aws.TagCluster: "prod", aws.TagServiceUID: string(svc.UID), aws.TagAllocated: "true"}
	l.srv.AddElasticIP("198.51.100.10", tags)
	l.srv.AddElasticIP("198.51.100.20", tags)
	svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "198.51.100.20"}}
	if st, ok, err := l.b.Get(l.ctx, svc); err != nil || !ok || st.Ingress[0].IP != "198.51.100.20" {
		t.Errorf("Get = %+v, %v, %v; want the address in status", st, ok, err)
	}
	st, err := l.ensure(svc, l.kube.list())
	if err != nil {
		t.Fatal(err)
	}
	if st.Ingress[0].IP != "198.51.100.20" {
		t.Errorf("status %s, want the address already in status", st.Ingress[0].IP)
	}
	if s := l.srv.Snapshot(); len(s.Addresses) != 1 || s.Addresses[0].PublicIP != "198.51.100.20" {
		t.Errorf("addresses %+v; want only 198.51.100.20", s.Addresses)
	}
}
