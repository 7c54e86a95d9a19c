package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	v1 "k8s.io/api/core/v1"
)

// subnets picks the NLB's subnets: the Service's annotation (IDs or Name
// tags, already checked against the operator's list), else the cloud
// config, else discovered in the nodes' VPC (discoverSubnets).
func (b *Backend) subnets(ctx context.Context, r request, nodes []*v1.Node) ([]string, error) {
	if len(r.Subnets) > 0 {
		return b.resolveSubnets(ctx, r.Subnets)
	}
	if len(b.cfg.NLB.Subnets) > 0 {
		return b.cfg.NLB.Subnets, nil
	}
	return b.discoverSubnets(ctx, r, nodes)
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
