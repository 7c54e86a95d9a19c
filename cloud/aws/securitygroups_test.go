package aws_test

import (
	"cmp"
	"slices"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	gocmp "github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

func group(s awsdouble.State, id string) awsdouble.SecurityGroup {
	for _, g := range s.SecurityGroups {
		if g.ID == id {
			return g
		}
	}
	return awsdouble.SecurityGroup{}
}

func sortedRules(rules []awsdouble.Rule) []awsdouble.Rule {
	out := slices.Clone(rules)
	slices.SortFunc(out, func(a, b awsdouble.Rule) int {
		return cmp.Or(strings.Compare(a.Protocol, b.Protocol), int(a.FromPort-b.FromPort),
			strings.Compare(a.CIDR, b.CIDR), strings.Compare(a.SourceGroupID, b.SourceGroupID))
	})
	return out
}

// spec.loadBalancerSourceRanges is enforced by the NLB's own security
// group (made with the NLB, as AWS allows no other time), the nodes'
// group admits the NLB's group on the NodePorts and health check port,
// the operator's own rules are never touched, and everything Berth added
// goes with the Service.
func TestNLBSourceRanges(t *testing.T) {
	l := newLab(t)
	nodesSG := l.srv.AddSecurityGroup("nodes", "vpc-1", map[string]string{"kubernetes.io/cluster/prod": "owned"})
	if _, err := l.ec2.AuthorizeSecurityGroupIngress(l.ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sdk.String(nodesSG),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: sdk.String("tcp"), FromPort: sdk.Int32(22), ToPort: sdk.Int32(22),
			IpRanges: []ec2types.IpRange{{CidrIp: sdk.String("198.51.100.0/24")}}}}}); err != nil {
		t.Fatal(err)
	}
	ssh := awsdouble.Rule{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "198.51.100.0/24"}
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	n2 := l.addNode("n2", "i-2", "198.18.0.12")
	l.srv.SetInstanceSecurityGroups("i-1", nodesSG)
	l.srv.SetInstanceSecurityGroups("i-2", nodesSG)
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000301", func(s *v1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24", "198.51.100.7/32"}
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = 32000
	})
	l.ensureActive(svc, []*v1.Node{n1, n2})
	s := l.srv.Snapshot()
	lb := s.LoadBalancers[0]
	if len(lb.SecurityGroups) != 1 {
		t.Fatalf("NLB security groups %v, want Berth's one", lb.SecurityGroups)
	}
	sg := lb.SecurityGroups[0]
	if g := group(s, sg); g.Tags[aws.TagServiceUID] != string(svc.UID) || g.VPCID != "vpc-1" {
		t.Errorf("the NLB's group %+v: want it tagged as the Service's, in the NLB's VPC", g)
	}
	frontend := func(cidrs ...string) []awsdouble.Rule {
		var out []awsdouble.Rule
		for _, c := range cidrs {
			out = append(out, awsdouble.Rule{Protocol: "tcp", FromPort: 80, ToPort: 80, CIDR: c}, awsdouble.Rule{Protocol: "udp", FromPort: 53, ToPort: 53, CIDR: c})
		}
		return sortedRules(out)
	}
	if diff := gocmp.Diff(frontend("198.51.100.7/32", "203.0.113.0/24"), sortedRules(group(s, sg).Ingress)); diff != "" {
		t.Errorf("the NLB's rules (-want +got):\n%s", diff)
	}
	backend := sortedRules([]awsdouble.Rule{ssh,
		{Protocol: "tcp", FromPort: 30080, ToPort: 30080, SourceGroupID: sg},
		{Protocol: "udp", FromPort: 30053, ToPort: 30053, SourceGroupID: sg},
		{Protocol: "tcp", FromPort: 32000, ToPort: 32000, SourceGroupID: sg},
	})
	if diff := gocmp.Diff(backend, sortedRules(group(s, nodesSG).Ingress)); diff != "" {
		t.Errorf("the nodes' rules (-want +got):\n%s", diff)
	}

	// The ranges change, then go: the group follows, and then admits all.
	svc.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"}
	l.ensureActive(svc, []*v1.Node{n1, n2})
	if diff := gocmp.Diff(frontend("192.0.2.0/24"), sortedRules(group(l.srv.Snapshot(), sg).Ingress)); diff != "" {
		t.Errorf("after the change (-want +got):\n%s", diff)
	}
	svc.Spec.LoadBalancerSourceRanges = nil
	l.ensureActive(svc, []*v1.Node{n1, n2})
	if diff := gocmp.Diff(frontend("0.0.0.0/0"), sortedRules(group(l.srv.Snapshot(), sg).Ingress)); diff != "" {
		t.Errorf("without ranges (-want +got):\n%s", diff)
	}

	if err := l.delete(svc); err != nil {
		t.Fatal(err)
	}
	s = l.srv.Snapshot()
	if len(s.SecurityGroups) != 1 || !gocmp.Equal(group(s, nodesSG).Ingress, []awsdouble.Rule{ssh}) {
		t.Errorf("after Delete: groups %+v; want the nodes' group with only its own rule", s.SecurityGroups)
	}
}

// An NLB of Berth's made without a security group cannot get one: a
// Service that restricts its sources is refused, never left open.
func TestNLBSourceRangesWithoutGroupRefused(t *testing.T) {
	l := newLab(t)
	n1 := l.addNode("n1", "i-1", "198.18.0.11")
	svc := service("web", "0c4b7f3e-aaaa-bbbb-cccc-000000000302")
	var tags []elbtypes.Tag
	for k, v := range map[string]string{aws.TagCluster: "prod", aws.TagServiceUID: string(svc.UID)} {
		tags = append(tags, elbtypes.Tag{Key: sdk.String(k), Value: sdk.String(v)})
	}
	if _, err := l.elb.CreateLoadBalancer(l.ctx, &elb.CreateLoadBalancerInput{
		Name: sdk.String(cloudprovider.DefaultLoadBalancerName(svc)), Type: elbtypes.LoadBalancerTypeEnumNetwork,
		Subnets: []string{"subnet-a", "subnet-b"}, Tags: tags,
	}); err != nil {
		t.Fatal(err)
	}
	l.ensureActive(svc, []*v1.Node{n1}) // no ranges: served as it is
	svc.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"}
	if _, err := l.b.Ensure(l.ctx, svc, []*v1.Node{n1}); err == nil || !strings.Contains(err.Error(), "cannot be enforced") {
		t.Errorf("Ensure = %v, want the source ranges refused", err)
	}
}
