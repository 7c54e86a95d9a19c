package awsdouble_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

func tcpFrom(port int32, cidr string) []ec2types.IpPermission {
	return []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(port), ToPort: aws.Int32(port),
		IpRanges: []ec2types.IpRange{{CidrIp: aws.String(cidr)}}}}
}

// Security groups as Berth relies on them: an NLB gets them only at
// creation, duplicate and missing rules are errors, a group in use cannot
// be deleted, and tags are validated.
func TestSecurityGroups(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	made, err := f.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("front"),
		Description: aws.String("front"), VpcId: aws.String("vpc-1")})
	if err != nil {
		t.Fatal(err)
	}
	sg := aws.ToString(made.GroupId)
	rule := &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: tcpFrom(80, "192.0.2.0/24")}
	type step struct {
		name     string
		err      error
		wantCode string
	}
	var steps []step
	add := func(name string, err error, wantCode string) { steps = append(steps, step{name, err, wantCode}) }
	_, err = f.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("front"), Description: aws.String("x"), VpcId: aws.String("vpc-1")})
	add("same name in the VPC", err, "InvalidGroup.Duplicate")
	_, err = f.ec2.AuthorizeSecurityGroupIngress(ctx, rule)
	add("authorize", err, "")
	_, err = f.ec2.AuthorizeSecurityGroupIngress(ctx, rule)
	add("authorize again", err, "InvalidPermission.Duplicate")
	_, err = f.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: tcpFrom(80, "192.0.2.1/24")})
	add("unmasked CIDR", err, "InvalidParameterValue")
	_, err = f.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: tcpFrom(81, "192.0.2.0/24")})
	add("revoke a missing rule", err, "InvalidPermission.NotFound")

	without := nlbInput("plain", "subnet-a")
	plain, err := f.elb.CreateLoadBalancer(ctx, without)
	add("NLB without groups", err, "")
	if err == nil {
		_, err = f.elb.SetSecurityGroups(ctx, &elbv2.SetSecurityGroupsInput{LoadBalancerArn: plain.LoadBalancers[0].LoadBalancerArn, SecurityGroups: []string{sg}})
		add("groups added to an NLB made without", err, "InvalidConfigurationRequest")
	}
	with := nlbInput("guarded", "subnet-a")
	with.SecurityGroups = []string{sg}
	guarded, err := f.elb.CreateLoadBalancer(ctx, with)
	add("NLB with a group", err, "")
	if err == nil {
		_, err = f.elb.SetSecurityGroups(ctx, &elbv2.SetSecurityGroupsInput{LoadBalancerArn: guarded.LoadBalancers[0].LoadBalancerArn, SecurityGroups: []string{}})
		add("all groups removed from an NLB made with some", err, "InvalidConfigurationRequest")
	}
	_, err = f.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(sg)})
	add("delete a group an NLB uses", err, "DependencyViolation")
	bad := nlbInput("tagged", "subnet-a")
	bad.Tags = []types.Tag{{Key: aws.String("aws:reserved"), Value: aws.String("x")}}
	_, err = f.elb.CreateLoadBalancer(ctx, bad)
	add("reserved tag key", err, "ValidationError")
	bad.Tags = []types.Tag{{Key: aws.String(strings.Repeat("k", 129)), Value: aws.String("x")}}
	_, err = f.elb.CreateLoadBalancer(ctx, bad)
	add("tag key too long", err, "ValidationError")

	for _, s := range steps {
		if got := code(s.err); got != s.wantCode {
			t.Errorf("%s: error %v, want code %q", s.name, s.err, s.wantCode)
		}
	}
}
