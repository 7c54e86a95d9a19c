package aws_test

import (
	"errors"
	"slices"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/berthlb/berth/cloud/aws"
)

// A target group someone else attached to Berth's NLB keeps its targets
// when the nodes change: Berth rewrites only groups tagged as the
// Service's.
func TestNLBForeignTargetGroupUntouched(t *testing.T) {
	l := newLab(t)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	n2 := l.addNode("n2", "i-2", "198.18.0.12")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000201")
	l.ensureActive(svc, []*v1.Node{n1})
	lb := l.srv.Snapshot().LoadBalancers[0]
	tg, err := l.elb.CreateTargetGroup(l.ctx, &elb.CreateTargetGroupInput{
		Name: sdk.String("someone-elses"), Protocol: elbtypes.ProtocolEnumTcp, Port: sdk.Int32(9000), VpcId: sdk.String("vpc-1"),
		TargetType: elbtypes.TargetTypeEnumInstance, Tags: []elbtypes.Tag{{Key: sdk.String("team"), Value: sdk.String("other")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	foreign := tg.TargetGroups[0].TargetGroupArn
	if _, err := l.elb.RegisterTargets(l.ctx, &elb.RegisterTargetsInput{TargetGroupArn: foreign, Targets: []elbtypes.TargetDescription{{Id: sdk.String("i-1")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.elb.CreateListener(l.ctx, &elb.CreateListenerInput{
		LoadBalancerArn: sdk.String(lb.ARN), Port: sdk.Int32(9000), Protocol: elbtypes.ProtocolEnumTcp,
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: foreign}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.b.Update(l.ctx, svc, []*v1.Node{n2}); err != nil {
		t.Fatal(err)
	}
	for _, g := range l.srv.Snapshot().TargetGroups {
		want := []string{"i-2"}
		if g.ARN == sdk.ToString(foreign) {
			want = []string{"i-1"}
		}
		if got := targetsOf(g); !cmp.Equal(got, want) {
			t.Errorf("group %s targets %v, want %v", g.Name, got, want)
		}
	}
}

// A Node whose providerID names an instance that is not this cluster's
// (another cluster's, untagged, or unknown) never becomes a target and
// never takes an Elastic IP.
func TestNodesOfOtherClustersRefused(t *testing.T) {
	l := newLab(t)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	other := l.addNode("other", "i-2", "198.18.0.12")
	l.srv.TagInstance("i-2", map[string]string{"kubernetes.io/cluster/prod": "", "kubernetes.io/cluster/other": "owned"})
	l.srv.AddInstance("i-3", "subnet-a", "198.18.0.13") // untagged
	untagged := other.DeepCopy()
	untagged.Name, untagged.Spec.ProviderID = "untagged", "aws:///eu-west-1a/i-3"
	unknown := other.DeepCopy()
	unknown.Name, unknown.Spec.ProviderID = "unknown", "aws:///eu-west-1a/i-404"

	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000202")
	l.ensureActive(svc, []*v1.Node{n1, other, untagged, unknown})
	for _, g := range l.srv.Snapshot().TargetGroups {
		if got := targetsOf(g); !cmp.Equal(got, []string{"i-1"}) {
			t.Errorf("group %s targets %v, want only this cluster's i-1", g.Name, got)
		}
	}

	// eip mode: the only eligible-looking node is another cluster's.
	l.kube.remove("n1")
	l.kube.put(untagged)
	eip := service("cheap", "0c4b7f3e-aaaa-bbbb-cccc-000000000203", eipMode)
	if _, err := l.b.Ensure(l.ctx, eip, l.kube.list()); err == nil {
		t.Fatal("Ensure mapped an Elastic IP to another cluster's instance")
	}
	if n := secondaries(l.srv.Snapshot()); n != 0 {
		t.Errorf("%d secondary addresses assigned on instances that are not this cluster's", n)
	}
}

// An Elastic IP of the operator's list that carries Berth's placement and
// allocation tags it did not write for the Service (left by a failed
// return, or planted) is scrubbed when taken: Berth neither unassigns the
// address the stray tag names nor releases the operator's Elastic IP.
func TestEIPStrayTagsIgnored(t *testing.T) {
	l := newLab(t)
	victim := l.srv.AddInstance("i-9", "subnet-a", "198.18.0.99")
	got, err := l.ec2.AssignPrivateIpAddresses(l.ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: sdk.String(victim), SecondaryPrivateIpAddressCount: sdk.Int32(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	victimIP := sdk.ToString(got.AssignedPrivateIpAddresses[0].PrivateIpAddress)
	id := l.srv.AddElasticIP("198.51.100.10", map[string]string{
		aws.TagPrivateAddress: "victim/" + victim + "/" + victimIP, aws.TagAllocated: "true",
	})
	l.b = mustBackend(t, l, func(c *aws.Config) { c.DefaultMode = aws.ModeEIP; c.EIP.AllocationIDs = []string{id} })
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000204")

	// No node yet: the address is taken, then the call fails.
	if _, err := l.b.Ensure(l.ctx, svc, nil); err == nil {
		t.Fatal("Ensure without nodes succeeded")
	}
	l.addNode("n1", "i-1", "198.18.0.11")
	if _, err := l.b.Ensure(l.ctx, svc, l.kube.list()); err != nil {
		t.Fatal(err)
	}
	if err := l.delete(svc); err != nil {
		t.Fatal(err)
	}
	s := l.srv.Snapshot()
	for _, ni := range s.NetworkInterfaces {
		if ni.ID == victim && !slices.Contains(ni.PrivateIPs, victimIP) {
			t.Errorf("the stray tag made Berth unassign %s from %s", victimIP, victim)
		}
	}
	if len(s.Addresses) != 1 || l.srv.Calls("ReleaseAddress") != 0 {
		t.Errorf("the operator's Elastic IP was released: %+v", s.Addresses)
	}
}

// An NLB the upstream AWS provider made for the Service (same name, its
// tags) is adopted, not duplicated: it keeps its DNS name, gains Berth's
// tags, and its listeners move to Berth's target groups while the
// upstream groups are deleted. Berth's own resources carry the upstream
// tags too.
// makeUpstream creates, as the upstream AWS provider would, an NLB for svc
// with one target group and an untagged listener; it returns the tags the
// upstream provider writes and the NLB's DNS name.
func makeUpstream(t *testing.T, l *lab, svc *v1.Service) ([]elbtypes.Tag, string) {
	t.Helper()
	upstream := []elbtypes.Tag{
		{Key: sdk.String("kubernetes.io/cluster/prod"), Value: sdk.String("owned")},
		{Key: sdk.String("kubernetes.io/service-name"), Value: sdk.String("default/web")},
	}
	made, err := l.elb.CreateLoadBalancer(l.ctx, &elb.CreateLoadBalancerInput{
		Name: sdk.String(cloudprovider.DefaultLoadBalancerName(svc)), Type: elbtypes.LoadBalancerTypeEnumNetwork,
		Scheme: elbtypes.LoadBalancerSchemeEnumInternetFacing, Subnets: []string{"subnet-a", "subnet-b"}, Tags: upstream,
	})
	if err != nil {
		t.Fatal(err)
	}
	lbARN, dns := made.LoadBalancers[0].LoadBalancerArn, sdk.ToString(made.LoadBalancers[0].DNSName)
	tg, err := l.elb.CreateTargetGroup(l.ctx, &elb.CreateTargetGroupInput{
		Name: sdk.String("k8s-default-web-0123456789"), Protocol: elbtypes.ProtocolEnumTcp, Port: sdk.Int32(30080),
		VpcId: sdk.String("vpc-1"), TargetType: elbtypes.TargetTypeEnumInstance, Tags: upstream,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.elb.CreateListener(l.ctx, &elb.CreateListenerInput{
		LoadBalancerArn: lbARN, Port: sdk.Int32(80), Protocol: elbtypes.ProtocolEnumTcp,
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: tg.TargetGroups[0].TargetGroupArn}},
	}); err != nil {
		t.Fatal(err)
	}

	return upstream, dns
}

func TestNLBAdoptsUpstream(t *testing.T) {
	l := newLab(t)
	l.srv.SetProvisioningDescribes(0)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000205")
	upstream, dns := makeUpstream(t, l, svc)

	st := l.ensureActive(svc, []*v1.Node{n1})
	s := l.srv.Snapshot()
	if len(s.LoadBalancers) != 1 || st.Ingress[0].Hostname != dns {
		t.Fatalf("load balancers %+v, status %+v: want the upstream NLB kept with its DNS name %s", s.LoadBalancers, st, dns)
	}
	if tags := s.LoadBalancers[0].Tags; tags[aws.TagServiceUID] != string(svc.UID) || tags[aws.TagCluster] != "prod" {
		t.Errorf("adopted NLB tags %v: want Berth's added", tags)
	}
	if len(s.TargetGroups) != 2 || len(s.Listeners) != 2 {
		t.Fatalf("%d groups, %d listeners; want Berth's 2 and 2 (the upstream group deleted)", len(s.TargetGroups), len(s.Listeners))
	}
	for _, g := range s.TargetGroups {
		if g.Name == "k8s-default-web-0123456789" {
			t.Errorf("the upstream group was left behind")
		}
		if g.Tags[aws.TagUpstreamServiceName] != "default/web" || g.Tags["kubernetes.io/cluster/prod"] != "owned" {
			t.Errorf("group %s tags %v: want the upstream tags too", g.Name, g.Tags)
		}
	}

	// The same NLB tagged for another Service is not adopted.
	other := service("other", "1d4b7f3e-aaaa-bbbb-cccc-000000000206")
	if _, err := l.elb.CreateLoadBalancer(l.ctx, &elb.CreateLoadBalancerInput{
		Name: sdk.String(cloudprovider.DefaultLoadBalancerName(other)), Type: elbtypes.LoadBalancerTypeEnumNetwork,
		Subnets: []string{"subnet-a"}, Tags: upstream,
	}); err != nil {
		t.Fatal(err)
	}
	var conflict *aws.ConflictError
	if _, err := l.ensure(other, []*v1.Node{n1}); !errors.As(err, &conflict) {
		t.Errorf("Ensure of another Service = %v, want a ConflictError", err)
	}
}
