package awsdouble_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// TestIPv6TargetGroups: ELB's rules for IPv6 target groups. Instance
// targets need a primary IPv6 address, ip targets an address of the
// group's family in the VPC, and only a dualstack NLB forwards to an
// IPv6 group.
func TestIPv6TargetGroups(t *testing.T) {
	f := newFixture(t)
	f.srv.SetSubnetIPv6("subnet-a", "2001:db8:0:1::/64")
	f.srv.SetSubnetIPv6("subnet-b", "2001:db8:0:2::/64")
	f.srv.AddInstanceIPv6("i-1", "2001:db8:0:1::10", true)
	f.srv.AddInstanceIPv6("i-2", "2001:db8:0:2::10", false)
	ctx := t.Context()

	ec2Out, err := f.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-1"}})
	if err != nil {
		t.Fatal(err)
	}
	a := ec2Out.Reservations[0].Instances[0].NetworkInterfaces[0].Ipv6Addresses
	if len(a) != 1 || aws.ToString(a[0].Ipv6Address) != "2001:db8:0:1::10" || !aws.ToBool(a[0].IsPrimaryIpv6) {
		t.Errorf("i-1's IPv6 addresses as EC2 shows them: %+v", a)
	}

	group := func(name string, targetType types.TargetTypeEnum) string {
		in := tgInput(name, 30080)
		in.TargetType, in.IpAddressType = targetType, types.TargetGroupIpAddressTypeEnumIpv6
		out, err := f.elb.CreateTargetGroup(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.TargetGroups[0].TargetGroupArn)
	}
	byInstance, byIP := group("v6-instance", types.TargetTypeEnumInstance), group("v6-ip", types.TargetTypeEnumIp)
	v4ByIP := tgInput("v4-ip", 30080)
	v4ByIP.TargetType = types.TargetTypeEnumIp
	out, err := f.elb.CreateTargetGroup(ctx, v4ByIP)
	if err != nil {
		t.Fatal(err)
	}
	v4 := aws.ToString(out.TargetGroups[0].TargetGroupArn)

	for _, tc := range []struct {
		name, group, target, wantCode string
	}{
		{name: "instance with a primary IPv6 address", group: byInstance, target: "i-1"},
		{name: "instance without one", group: byInstance, target: "i-2", wantCode: "InvalidTarget"},
		{name: "IPv6 address in the VPC", group: byIP, target: "2001:db8:0:2::10"},
		{name: "IPv6 address outside the VPC", group: byIP, target: "2001:db8:0:9::10", wantCode: "InvalidTarget"},
		{name: "IPv4 address in an IPv6 group", group: byIP, target: "10.0.1.10", wantCode: "ValidationError"},
		{name: "IPv6 address in an IPv4 group", group: v4, target: "2001:db8:0:1::10", wantCode: "ValidationError"},
		{name: "IPv4 address in the VPC", group: v4, target: "10.0.1.10"},
		{name: "IPv4 address of another VPC", group: v4, target: "10.1.0.5", wantCode: "InvalidTarget"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.elb.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(tc.group),
				Targets: []types.TargetDescription{{Id: aws.String(tc.target)}}})
			if got := code(err); got != tc.wantCode {
				t.Fatalf("RegisterTargets %s: code %q (%v), want %q", tc.target, got, err, tc.wantCode)
			}
		})
	}
	health, err := f.elb.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(byIP)})
	if err != nil {
		t.Fatal(err)
	}
	if d := health.TargetHealthDescriptions; len(d) != 1 || d[0].TargetHealth.State != types.TargetHealthStateEnumHealthy {
		t.Errorf("health of an address of a running instance: %+v", d)
	}

	listener := func(lb string) error {
		_, err := f.elb.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(lb),
			Protocol: types.ProtocolEnumTcp, Port: aws.Int32(80), DefaultActions: []types.Action{
				{Type: types.ActionTypeEnumForward, TargetGroupArn: aws.String(byIP)}}})
		return err
	}
	ipv4LB, err := f.elb.CreateLoadBalancer(ctx, nlbInput("v4", "subnet-a", "subnet-b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := listener(aws.ToString(ipv4LB.LoadBalancers[0].LoadBalancerArn)); code(err) != "InvalidConfigurationRequest" {
		t.Errorf("IPv6 group behind an ipv4 NLB: %v, want InvalidConfigurationRequest", err)
	}
	in := nlbInput("dual", "subnet-a", "subnet-b")
	in.IpAddressType = types.IpAddressTypeDualstack
	dual, err := f.elb.CreateLoadBalancer(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := listener(aws.ToString(dual.LoadBalancers[0].LoadBalancerArn)); err != nil {
		t.Errorf("IPv6 group behind a dualstack NLB: %v", err)
	}
}
