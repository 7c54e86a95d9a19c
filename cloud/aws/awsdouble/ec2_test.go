package awsdouble_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
)

func filter(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

func tagMap(tags []types.Tag) map[string]string {
	out := map[string]string{}
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

func TestDescribeSubnets(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		in       ec2.DescribeSubnetsInput
		want     []string
		wantCode string
	}{
		{name: "all", want: []string{"subnet-a", "subnet-a2", "subnet-b", "subnet-c"}},
		{name: "by ID", in: ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-b", "subnet-a"}},
			want: []string{"subnet-b", "subnet-a"}},
		{name: "vpc-id", in: ec2.DescribeSubnetsInput{Filters: []types.Filter{filter("vpc-id", "vpc-2")}},
			want: []string{"subnet-c"}},
		{name: "availability-zone and vpc-id", in: ec2.DescribeSubnetsInput{Filters: []types.Filter{
			filter("availability-zone", "eu-west-1a"), filter("vpc-id", "vpc-1")}}, want: []string{"subnet-a", "subnet-a2"}},
		{name: "tag", in: ec2.DescribeSubnetsInput{Filters: []types.Filter{filter("tag:kubernetes.io/role/elb", "1")}},
			want: []string{"subnet-a"}},
		{name: "tag-key", in: ec2.DescribeSubnetsInput{Filters: []types.Filter{filter("tag-key", "kubernetes.io/*")}},
			want: []string{"subnet-a"}},
		{name: "wildcard", in: ec2.DescribeSubnetsInput{Filters: []types.Filter{filter("vpc-id", "vpc-?", "none")}},
			want: []string{"subnet-a", "subnet-a2", "subnet-b", "subnet-c"}},
		{name: "unknown ID", in: ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-x"}},
			wantCode: "InvalidSubnetID.NotFound"},
		{name: "unknown filter", in: ec2.DescribeSubnetsInput{Filters: []types.Filter{filter("owner", "x")}},
			wantCode: "InvalidParameterValue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := f.ec2.DescribeSubnets(t.Context(), &tt.in)
			if got := code(err); got != tt.wantCode {
				t.Fatalf("error code = %q, want %q", got, tt.wantCode)
			}
			if err != nil {
				return
			}
			var got []string
			for _, sn := range out.Subnets {
				got = append(got, aws.ToString(sn.SubnetId))
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("subnets (-want +got):\n%s", d)
			}
		})
	}
	out, err := f.ec2.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-a"}})
	if err != nil {
		t.Fatal(err)
	}
	sn := out.Subnets[0]
	got := []string{aws.ToString(sn.VpcId), aws.ToString(sn.AvailabilityZone), aws.ToString(sn.CidrBlock),
		fmt.Sprint(tagMap(sn.Tags))}
	if d := cmp.Diff([]string{"vpc-1", "eu-west-1a", "10.0.1.0/24", "map[kubernetes.io/role/elb:1]"}, got); d != "" {
		t.Errorf("subnet fields (-want +got):\n%s", d)
	}
}

// instanceView flattens what Berth reads from an instance.
func instanceView(in types.Instance) []string {
	v := []string{aws.ToString(in.InstanceId), aws.ToString(in.PrivateIpAddress), aws.ToString(in.SubnetId),
		aws.ToString(in.VpcId), aws.ToString(in.Placement.AvailabilityZone),
		fmt.Sprint(aws.ToInt32(in.State.Code), " ", in.State.Name), aws.ToString(in.PublicIpAddress)}
	for _, eni := range in.NetworkInterfaces {
		v = append(v, fmt.Sprint(aws.ToString(eni.NetworkInterfaceId), " ", aws.ToString(eni.SubnetId), " ",
			aws.ToString(eni.VpcId), " ", aws.ToString(eni.PrivateIpAddress), " ", aws.ToInt32(eni.Attachment.DeviceIndex),
			" ", eni.Attachment.Status, " ", strings.HasPrefix(aws.ToString(eni.Attachment.AttachmentId), "eni-attach-")))
		for _, ip := range eni.PrivateIpAddresses {
			v = append(v, fmt.Sprint(aws.ToString(ip.PrivateIpAddress), " ", aws.ToBool(ip.Primary)))
			if ip.Association != nil {
				v = append(v, "public "+aws.ToString(ip.Association.PublicIp))
			}
		}
	}
	return v
}

func TestDescribeInstances(t *testing.T) {
	f := newFixture(t)
	f.srv.SetInstanceState("i-2", "stopped")
	tests := []struct {
		name     string
		in       ec2.DescribeInstancesInput
		want     [][]string
		wantCode string
	}{
		{name: "by ID", in: ec2.DescribeInstancesInput{InstanceIds: []string{"i-1"}}, want: [][]string{{
			"i-1", "10.0.1.10", "subnet-a", "vpc-1", "eu-west-1a", "16 running", "",
			f.eni1 + " subnet-a vpc-1 10.0.1.10 0 attached true", "10.0.1.10 true"}}},
		{name: "state filter", in: ec2.DescribeInstancesInput{Filters: []types.Filter{
			filter("instance-state-name", "stopped")}}, want: [][]string{{
			"i-2", "10.0.2.10", "subnet-b", "vpc-1", "eu-west-1b", "80 stopped", "",
			f.eni2 + " subnet-b vpc-1 10.0.2.10 0 attached true", "10.0.2.10 true"}}},
		{name: "tag filter matches nothing", in: ec2.DescribeInstancesInput{Filters: []types.Filter{
			filter("tag:Name", "x")}}},
		{name: "unknown ID", in: ec2.DescribeInstancesInput{InstanceIds: []string{"i-1", "i-9"}},
			wantCode: "InvalidInstanceID.NotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := f.ec2.DescribeInstances(t.Context(), &tt.in)
			if got := code(err); got != tt.wantCode {
				t.Fatalf("error code = %q, want %q", got, tt.wantCode)
			}
			if err != nil {
				return
			}
			var got [][]string
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					got = append(got, instanceView(in))
				}
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("instances (-want +got):\n%s", d)
			}
		})
	}
}

func (f *fixture) eniIPs(ctx context.Context, id string) ([]string, error) {
	out, err := f.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{id}})
	if err != nil {
		return nil, err
	}
	eni := out.NetworkInterfaces[0]
	ips := []string{aws.ToString(eni.Attachment.InstanceId)}
	for _, ip := range eni.PrivateIpAddresses {
		s := aws.ToString(ip.PrivateIpAddress)
		if a := ip.Association; a != nil {
			s += fmt.Sprintf(" %s %s %t", aws.ToString(a.PublicIp), aws.ToString(a.AllocationId),
				strings.HasPrefix(aws.ToString(a.AssociationId), "eipassoc-"))
		}
		ips = append(ips, s)
	}
	return ips, nil
}

func TestPrivateIPAddresses(t *testing.T) {
	f := newFixture(t)
	f.srv.SetPrivateIPLimit(5)
	assign := func(count int32, ips ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			in := &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(f.eni1), PrivateIpAddresses: ips}
			if count > 0 {
				in.SecondaryPrivateIpAddressCount = aws.Int32(count)
			}
			out, err := f.ec2.AssignPrivateIpAddresses(ctx, in)
			if err != nil {
				return err
			}
			var got []string
			for _, a := range out.AssignedPrivateIpAddresses {
				got = append(got, aws.ToString(a.PrivateIpAddress))
			}
			if count > 0 {
				return check("assigned", got, []string{"10.0.1.4", "10.0.1.5"}[:count])
			}
			return check("assigned", got, ips)
		}
	}
	unassign := func(eni string, ips ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{
				NetworkInterfaceId: aws.String(eni), PrivateIpAddresses: ips})
			return err
		}
	}
	runSteps(t, []step{
		{name: "assign by count", run: assign(2)},
		{name: "assign explicit", run: assign(0, "10.0.1.100")},
		{name: "assign address in use", run: assign(0, "10.0.1.100"), wantCode: "InvalidIPAddress.InUse"},
		{name: "assign address outside subnet", run: assign(0, "10.0.2.50"), wantCode: "InvalidParameterValue"},
		{name: "assign reserved address", run: assign(0, "10.0.1.1"), wantCode: "InvalidParameterValue"},
		{name: "assign beyond limit", run: assign(2), wantCode: "PrivateIpAddressLimitExceeded"},
		{name: "unassign primary", run: unassign(f.eni1, "10.0.1.10"), wantCode: "InvalidParameterValue"},
		{name: "unassign unassigned", run: unassign(f.eni1, "10.0.1.99"), wantCode: "InvalidParameterValue"},
		{name: "unassign unknown ENI", run: unassign("eni-x", "10.0.1.4"), wantCode: "InvalidNetworkInterfaceID.NotFound"},
		{name: "unassign", run: unassign(f.eni1, "10.0.1.100")},
		{name: "describe", run: func(ctx context.Context) error {
			ips, err := f.eniIPs(ctx, f.eni1)
			if err != nil {
				return err
			}
			return check("ENI", ips, []string{"i-1", "10.0.1.10", "10.0.1.4", "10.0.1.5"})
		}},
		{name: "describe unknown ENI", wantCode: "InvalidNetworkInterfaceID.NotFound",
			run: func(ctx context.Context) error { _, err := f.eniIPs(ctx, "eni-x"); return err }},
	})
}

func TestElasticIPs(t *testing.T) {
	f := newFixture(t)
	f.srv.AddPublicIPv4Pool("ipv4pool-ec2-1", "198.51.100.0/30")
	existing := f.srv.AddElasticIP("192.0.2.7", map[string]string{"owner": "ops"})
	var alloc1, alloc2, assoc1 string
	allocate := func(pool string, want *string, wantIP string) func(context.Context) error {
		return func(ctx context.Context) error {
			in := &ec2.AllocateAddressInput{Domain: types.DomainTypeVpc, TagSpecifications: []types.TagSpecification{{
				ResourceType: types.ResourceTypeElasticIp, Tags: []types.Tag{{Key: aws.String("svc"), Value: aws.String("a")}}}}}
			if pool != "" {
				in.PublicIpv4Pool = aws.String(pool)
			}
			out, err := f.ec2.AllocateAddress(ctx, in)
			if err != nil {
				return err
			}
			*want = aws.ToString(out.AllocationId)
			return check("allocation", []string{aws.ToString(out.PublicIp), string(out.Domain), aws.ToString(out.PublicIpv4Pool),
				(*want)[:9]}, []string{wantIP, "vpc", orAmazon(pool), "eipalloc-"})
		}
	}
	associate := func(alloc *string, eni, ip string, reassoc bool) func(context.Context) error {
		return func(ctx context.Context) error {
			in := &ec2.AssociateAddressInput{AllocationId: alloc, NetworkInterfaceId: aws.String(eni),
				AllowReassociation: aws.Bool(reassoc)}
			if ip != "" {
				in.PrivateIpAddress = aws.String(ip)
			}
			out, err := f.ec2.AssociateAddress(ctx, in)
			if err == nil && alloc == &alloc1 {
				assoc1 = aws.ToString(out.AssociationId)
			}
			return err
		}
	}
	describe := func(in *ec2.DescribeAddressesInput, want ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			out, err := f.ec2.DescribeAddresses(ctx, in)
			if err != nil {
				return err
			}
			var got []string
			for _, a := range out.Addresses {
				got = append(got, fmt.Sprint(aws.ToString(a.PublicIp), " ", aws.ToString(a.NetworkInterfaceId), " ",
					aws.ToString(a.PrivateIpAddress), " ", aws.ToString(a.InstanceId), " ", a.AssociationId != nil,
					" ", aws.ToString(a.PublicIpv4Pool), " ", a.Domain, " ", tagMap(a.Tags)))
			}
			return check("addresses", got, want)
		}
	}
	release := func(alloc *string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.ec2.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: alloc})
			return err
		}
	}
	disassociate := func(assoc *string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := f.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: assoc})
			return err
		}
	}
	runSteps(t, []step{
		{name: "allocate", run: allocate("", &alloc1, "203.0.113.1")},
		{name: "allocate from pool", run: allocate("ipv4pool-ec2-1", &alloc2, "198.51.100.1")},
		{name: "allocate from unknown pool", run: allocate("ipv4pool-x", new(string), ""),
			wantCode: "InvalidPublicIpv4PoolID.NotFound"},
		{name: "describe pre-existing by tag", run: describe(&ec2.DescribeAddressesInput{Filters: []types.Filter{
			filter("tag:owner", "ops")}}, "192.0.2.7    false amazon vpc map[owner:ops]")},
		{name: "associate with primary", run: associate(&alloc1, f.eni1, "", false)},
		{name: "associate again elsewhere", run: associate(&alloc1, f.eni2, "", false), wantCode: "Resource.AlreadyAssociated"},
		{name: "associate unassigned address", run: associate(&alloc2, f.eni1, "10.0.1.77", false),
			wantCode: "InvalidParameterValue"},
		{name: "associate unknown allocation", run: associate(aws.String("eipalloc-x"), f.eni1, "", false),
			wantCode: "InvalidAllocationID.NotFound"},
		{name: "describe by ENI", run: describe(&ec2.DescribeAddressesInput{Filters: []types.Filter{
			filter("network-interface-id", f.eni1)}}, "203.0.113.1 "+f.eni1+" 10.0.1.10 i-1 true amazon vpc map[svc:a]")},
		{name: "ENI shows association", run: func(ctx context.Context) error {
			ips, err := f.eniIPs(ctx, f.eni1)
			if err != nil {
				return err
			}
			return check("ENI", ips, []string{"i-1", "10.0.1.10 203.0.113.1 " + alloc1 + " true"})
		}},
		{name: "instance shows public IP", run: func(ctx context.Context) error {
			out, err := f.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-1"}})
			if err != nil {
				return err
			}
			v := instanceView(out.Reservations[0].Instances[0])
			return check("instance", v[len(v)-1], "public 203.0.113.1")
		}},
		{name: "release associated", run: release(&alloc1), wantCode: "InvalidIPAddress.InUse"},
		{name: "reassociate to secondary address", run: func(ctx context.Context) error {
			if _, err := f.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
				NetworkInterfaceId: aws.String(f.eni2), PrivateIpAddresses: []string{"10.0.2.20"}}); err != nil {
				return err
			}
			return associate(&alloc1, f.eni2, "10.0.2.20", true)(ctx)
		}},
		{name: "unassigning the address disassociates", run: func(ctx context.Context) error {
			if _, err := f.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{
				NetworkInterfaceId: aws.String(f.eni2), PrivateIpAddresses: []string{"10.0.2.20"}}); err != nil {
				return err
			}
			return describe(&ec2.DescribeAddressesInput{AllocationIds: []string{alloc1}},
				"203.0.113.1    false amazon vpc map[svc:a]")(ctx)
		}},
		{name: "disassociate stale association", run: disassociate(&assoc1), wantCode: "InvalidAssociationID.NotFound"},
		{name: "associate and disassociate", run: func(ctx context.Context) error {
			if err := associate(&alloc1, f.eni1, "10.0.1.10", false)(ctx); err != nil {
				return err
			}
			return disassociate(&assoc1)(ctx)
		}},
		{name: "release", run: release(&alloc1)},
		{name: "release again", run: release(&alloc1), wantCode: "InvalidAllocationID.NotFound"},
		{name: "describe by public IP", run: describe(&ec2.DescribeAddressesInput{PublicIps: []string{"198.51.100.1"}},
			"198.51.100.1    false ipv4pool-ec2-1 vpc map[svc:a]")},
		{name: "describe unknown allocation", run: describe(&ec2.DescribeAddressesInput{AllocationIds: []string{existing, "eipalloc-x"}}),
			wantCode: "InvalidAllocationID.NotFound"},
		{name: "address limit", wantCode: "AddressLimitExceeded", run: func(ctx context.Context) error {
			f.srv.SetAddressLimit(2)
			return allocate("", new(string), "")(ctx)
		}},
	})
}

func orAmazon(pool string) string {
	if pool == "" {
		return "amazon"
	}
	return pool
}

func TestEC2Tags(t *testing.T) {
	f := newFixture(t)
	alloc := f.srv.AddElasticIP("192.0.2.1", map[string]string{"keep": "1"})
	for _, id := range []string{alloc, "subnet-b", "i-1"} {
		tag := func(k, v string) types.Tag { return types.Tag{Key: aws.String(k), Value: aws.String(v)} }
		tagOps := func(ctx context.Context) error {
			if _, err := f.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id},
				Tags: []types.Tag{tag("a", "1"), tag("b", "2"), tag("c", "3")}}); err != nil {
				return err
			}
			_, err := f.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: []types.Tag{
				tag("a", "other"), tag("b", "2"), {Key: aws.String("c")}}})
			return err
		}
		runSteps(t, []step{{name: id, run: tagOps}})
	}
	st := f.srv.Snapshot()
	got := []map[string]string{st.Addresses[0].Tags, st.Subnets[2].Tags, st.Instances[0].Tags}
	want := []map[string]string{{"keep": "1", "a": "1"}, {"a": "1"}, {"a": "1"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("tags (-want +got):\n%s", d)
	}
	runSteps(t, []step{
		{name: "delete all tags", run: func(ctx context.Context) error {
			_, err := f.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{"i-1"}})
			return err
		}},
		{name: "unknown allocation", wantCode: "InvalidAllocationID.NotFound", run: func(ctx context.Context) error {
			_, err := f.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"eipalloc-x"}, Tags: []types.Tag{{Key: aws.String("k")}}})
			return err
		}},
		{name: "untaggable resource", wantCode: "InvalidID", run: func(ctx context.Context) error {
			_, err := f.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"vpc-1"}, Tags: []types.Tag{{Key: aws.String("k")}}})
			return err
		}},
	})
	if got := f.srv.Snapshot().Instances[0].Tags; len(got) != 0 {
		t.Errorf("instance tags = %v, want none", got)
	}
}
