package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// subnets picks the NLB's subnets: the Service's annotation (IDs or Name
// tags, already checked against the operator's list), else the cloud
// config, else one per availability zone among those tagged for this
// cluster and scheme (kubernetes.io/role/elb or kubernetes.io/role/internal-elb).
func (b *Backend) subnets(ctx context.Context, r request) ([]string, error) {
	if len(r.Subnets) > 0 {
		return b.resolveSubnets(ctx, r.Subnets)
	}
	if len(b.cfg.NLB.Subnets) > 0 {
		return b.cfg.NLB.Subnets, nil
	}
	role := "kubernetes.io/role/elb"
	if r.Scheme == schemeInternal {
		role = "kubernetes.io/role/internal-elb"
	}
	out, err := b.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
		{Name: sdk.String("tag-key"), Values: []string{"kubernetes.io/cluster/" + b.cfg.ClusterName}},
		{Name: sdk.String("tag:" + role), Values: []string{"1", ""}},
	}})
	if err != nil {
		return nil, fmt.Errorf("discover subnets: %w", err)
	}
	byZone := map[string]string{}
	for _, s := range out.Subnets {
		if r.DualStack && !hasIPv6(s) {
			continue
		}
		z, id := sdk.ToString(s.AvailabilityZone), sdk.ToString(s.SubnetId)
		if cur, ok := byZone[z]; !ok || id < cur {
			byZone[z] = id
		}
	}
	if len(byZone) == 0 {
		what := ""
		if r.DualStack {
			what = " with an IPv6 CIDR (the Service is dual-stack)"
		}
		return nil, fmt.Errorf("no subnet%s is tagged kubernetes.io/cluster/%s and %s; tag the subnets, or list them in annotation %s",
			what, b.cfg.ClusterName, role, AnnotationSubnets)
	}
	ids := make([]string, 0, len(byZone))
	for _, id := range byZone {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// resolveSubnets turns the names in the list (anything not starting with
// "subnet-") into IDs by their Name tag; a name must match exactly one
// subnet.
func (b *Backend) resolveSubnets(ctx context.Context, list []string) ([]string, error) {
	var ids, names []string
	for _, s := range list {
		if strings.HasPrefix(s, "subnet-") {
			ids = append(ids, s)
		} else {
			names = append(names, s)
		}
	}
	if len(names) > 0 {
		out, err := b.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
			{Name: sdk.String("tag:Name"), Values: names},
		}})
		if err != nil {
			return nil, fmt.Errorf("find subnets by name: %w", err)
		}
		byName := map[string][]string{}
		for _, s := range out.Subnets {
			n := fromEC2Tags(s.Tags)["Name"]
			byName[n] = append(byName[n], sdk.ToString(s.SubnetId))
		}
		for _, n := range names {
			switch got := byName[n]; len(got) {
			case 1:
				ids = append(ids, got[0])
			case 0:
				return nil, fmt.Errorf("annotation %s: no subnet is named %q", AnnotationSubnets, n)
			default:
				return nil, fmt.Errorf("annotation %s: %d subnets are named %q (%s); give IDs", AnnotationSubnets, len(got), n, strings.Join(got, ", "))
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// hasIPv6 reports whether the subnet has an associated IPv6 CIDR.
func hasIPv6(s ec2types.Subnet) bool {
	for _, a := range s.Ipv6CidrBlockAssociationSet {
		if a.Ipv6CidrBlockState != nil && a.Ipv6CidrBlockState.State == ec2types.SubnetCidrBlockStateCodeAssociated {
			return true
		}
	}
	return false
}
