package aws

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// subnetMappings returns the NLB's subnet mappings when the Service names
// its addresses (Elastic IPs or private addresses, one per subnet) or the
// NLB is dualstack (a source NAT prefix per subnet, for UDP); nil means
// plain subnets. Elastic IPs go to the subnets in sorted order, as listed;
// a private address goes to the subnet that contains it.
func (b *Backend) subnetMappings(ctx context.Context, subnets []string, r request) ([]elbtypes.SubnetMapping, error) {
	if len(r.EIPAllocations) == 0 && len(r.PrivateIPv4) == 0 && !r.DualStack {
		return nil, nil
	}
	out := make([]elbtypes.SubnetMapping, len(subnets))
	for i, id := range subnets {
		out[i].SubnetId = sdk.String(id)
		if r.DualStack {
			out[i].SourceNatIpv6Prefix = sdk.String("auto_assigned")
		}
	}
	if n := len(r.EIPAllocations); n > 0 {
		if n != len(subnets) {
			return nil, fmt.Errorf("annotation %s names %d Elastic IPs for %d subnets (%v): give one per subnet",
				AnnotationEIPAllocations, n, len(subnets), subnets)
		}
		for i := range out {
			out[i].AllocationId = sdk.String(r.EIPAllocations[i])
		}
	}
	if n := len(r.PrivateIPv4); n > 0 {
		if n != len(subnets) {
			return nil, fmt.Errorf("annotation %s names %d addresses for %d subnets (%v): give one per subnet",
				AnnotationPrivateIPv4, n, len(subnets), subnets)
		}
		desc, err := b.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: subnets})
		if err != nil {
			return nil, fmt.Errorf("describe subnets %v: %w", subnets, err)
		}
		cidr := map[string]netip.Prefix{}
		for _, s := range desc.Subnets {
			cidr[sdk.ToString(s.SubnetId)], _ = netip.ParsePrefix(sdk.ToString(s.CidrBlock))
		}
		for _, a := range r.PrivateIPv4 {
			ip := netip.MustParseAddr(a) // checked by parseLBOptions
			placed := false
			for i, id := range subnets {
				if cidr[id].Contains(ip) && out[i].PrivateIPv4Address == nil {
					out[i].PrivateIPv4Address, placed = sdk.String(a), true
					break
				}
			}
			if !placed {
				return nil, fmt.Errorf("annotation %s: %s is in none of the NLB's subnets %v (or two addresses share one)",
					AnnotationPrivateIPv4, a, subnets)
			}
		}
	}
	return out, nil
}

// ensureCrossZone sets the NLB's cross-zone attribute when the Service
// asks for a value it does not have. Without the annotation the attribute
// is left as it is.
func (b *Backend) ensureCrossZone(ctx context.Context, lbARN string, r request) error {
	if r.CrossZone == nil {
		return nil
	}
	const key = "load_balancing.cross_zone.enabled"
	want := strconv.FormatBool(*r.CrossZone)
	out, err := b.elb.DescribeLoadBalancerAttributes(ctx, &elb.DescribeLoadBalancerAttributesInput{LoadBalancerArn: sdk.String(lbARN)})
	if err != nil {
		return fmt.Errorf("read the NLB's attributes: %w", err)
	}
	for _, a := range out.Attributes {
		if sdk.ToString(a.Key) == key && sdk.ToString(a.Value) == want {
			return nil
		}
	}
	if _, err := b.elb.ModifyLoadBalancerAttributes(ctx, &elb.ModifyLoadBalancerAttributesInput{LoadBalancerArn: sdk.String(lbARN),
		Attributes: []elbtypes.LoadBalancerAttribute{{Key: sdk.String(key), Value: sdk.String(want)}}}); err != nil {
		return fmt.Errorf("set %s=%s: %w", key, want, err)
	}
	return nil
}

// ensureTargetGroupAttributes sets the attributes the Service asks for on
// one of its groups, those that differ only. Attributes not named are left
// as they are.
func (b *Backend) ensureTargetGroupAttributes(ctx context.Context, arn string, r request) error {
	if len(r.TargetGroupAttributes) == 0 {
		return nil
	}
	out, err := b.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: sdk.String(arn)})
	if err != nil {
		return fmt.Errorf("read target group attributes: %w", err)
	}
	have := map[string]string{}
	for _, a := range out.Attributes {
		have[sdk.ToString(a.Key)] = sdk.ToString(a.Value)
	}
	var change []elbtypes.TargetGroupAttribute
	for k, v := range r.TargetGroupAttributes {
		if have[k] != v {
			change = append(change, elbtypes.TargetGroupAttribute{Key: sdk.String(k), Value: sdk.String(v)})
		}
	}
	if len(change) == 0 {
		return nil
	}
	if _, err := b.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: sdk.String(arn), Attributes: change}); err != nil {
		return fmt.Errorf("set target group attributes: %w", err)
	}
	return nil
}
