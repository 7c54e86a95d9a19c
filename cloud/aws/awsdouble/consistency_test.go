package awsdouble_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// TestEC2ChangeVisibilityDelay: a new rule, an association and new tags
// are missing from the next describes, which show and filter the state
// before the change, then appear.
func TestEC2ChangeVisibilityDelay(t *testing.T) {
	f := newFixture(t)
	f.srv.SetEC2ChangeVisibilityDelay(2)
	ctx := t.Context()
	sg := f.srv.AddSecurityGroup("front", "vpc-1", nil)
	if _, err := f.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg),
		IpPermissions: tcpFrom(80, "192.0.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	alloc, err := f.ec2.AllocateAddress(ctx, &ec2.AllocateAddressInput{Domain: types.DomainTypeVpc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: alloc.AllocationId,
		NetworkInterfaceId: aws.String(f.eni1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{aws.ToString(alloc.AllocationId)},
		Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("a")}}}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, false, true} {
		groups, err := f.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{sg}})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(groups.SecurityGroups[0].IpPermissions) == 1; got != want {
			t.Errorf("describe %d: rule shown %v, want %v", i+1, got, want)
		}
		tagged, err := f.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []types.Filter{
			{Name: aws.String("tag:team"), Values: []string{"a"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(tagged.Addresses) == 1 && tagged.Addresses[0].AssociationId != nil; got != want {
			t.Errorf("describe %d: tagged and associated address shown %v, want %v", i+1, got, want)
		}
	}
}
