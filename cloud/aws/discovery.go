package aws

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	v1 "k8s.io/api/core/v1"
)

// subnetInfo is what subnet discovery weighs about one subnet.
type subnetInfo struct {
	ID, Zone     string
	PlainZone    bool   // an availability zone, not a Local or Wavelength Zone
	Public       bool   // its route table has a default route to an internet gateway
	IPv6         bool   // it has an associated IPv6 CIDR
	Role         bool   // tagged kubernetes.io/role/elb (or internal-elb) for the scheme asked
	ClusterTag   string // value of kubernetes.io/cluster/<this cluster>, "" if absent
	OtherCluster bool   // tagged for another cluster and not this one
}

// chooseSubnets picks one subnet per availability zone for an NLB, as the
// upstream AWS provider does: subnets of other clusters, in Local or
// Wavelength Zones, or without IPv6 for a dual-stack NLB are left out; an
// internet-facing NLB takes only public subnets (a route to an internet
// gateway), preferring those with the role tag kubernetes.io/role/elb; an
// internal one takes only subnets tagged kubernetes.io/role/internal-elb.
// Then one with this cluster's tag is preferred, then the lowest ID. It
// also returns why each left-out subnet was.
func chooseSubnets(cands []subnetInfo, internal, dualStack bool) (ids []string, skipped map[string]string) {
	skipped = map[string]string{}
	best := map[string]subnetInfo{}
	better := func(a, b subnetInfo) bool {
		if a.Role != b.Role {
			return a.Role
		}
		if (a.ClusterTag != "") != (b.ClusterTag != "") {
			return a.ClusterTag != ""
		}
		return a.ID < b.ID
	}
	for _, s := range cands {
		switch {
		case s.OtherCluster:
			skipped[s.ID] = "tagged for another cluster"
		case !s.PlainZone:
			skipped[s.ID] = "in a Local or Wavelength Zone"
		case dualStack && !s.IPv6:
			skipped[s.ID] = "no IPv6 CIDR (the Service is dual-stack)"
		case !internal && !s.Public:
			skipped[s.ID] = "private (no route to an internet gateway) and the NLB is internet-facing"
		case internal && !s.Role:
			skipped[s.ID] = "not tagged kubernetes.io/role/internal-elb and the NLB is internal"
		default:
			if cur, ok := best[s.Zone]; !ok || better(s, cur) {
				best[s.Zone] = s
			}
		}
	}
	for _, s := range best {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids, skipped
}

// publicSubnets returns which of the subnets route 0.0.0.0/0 or ::/0 to an
// internet gateway, through their explicitly associated route table or, for
// a subnet without one, the VPC's main table.
func publicSubnets(tables []ec2types.RouteTable, subnets []string) map[string]bool {
	viaIGW := func(rt ec2types.RouteTable) bool {
		for _, r := range rt.Routes {
			dst := sdk.ToString(r.DestinationCidrBlock) + sdk.ToString(r.DestinationIpv6CidrBlock)
			if (dst == "0.0.0.0/0" || dst == "::/0") && strings.HasPrefix(sdk.ToString(r.GatewayId), "igw-") {
				return true
			}
		}
		return false
	}
	explicit := map[string]bool{}
	mainPublic := false
	out := map[string]bool{}
	for _, rt := range tables {
		for _, a := range rt.Associations {
			if sdk.ToBool(a.Main) {
				mainPublic = viaIGW(rt)
			} else if id := sdk.ToString(a.SubnetId); id != "" {
				explicit[id] = true
				out[id] = viaIGW(rt)
			}
		}
	}
	for _, id := range subnets {
		if !explicit[id] {
			out[id] = mainPublic
		}
	}
	return out
}

// clusterVPC is the VPC of the cluster's nodes: of the running instances,
// tagged as this cluster's, that the Nodes name.
func (b *Backend) clusterVPC(ctx context.Context, nodes []*v1.Node) (string, error) {
	ids := instances(nodes, func(n *v1.Node) bool { return instanceID(n) != "" })
	if len(ids) > 0 {
		out, err := b.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: sdk.String("instance-id"), Values: ids},
			{Name: sdk.String("tag-key"), Values: []string{clusterTagKey(b.cfg.ClusterName)}},
		}})
		if err != nil {
			return "", fmt.Errorf("find the nodes' VPC: %w", err)
		}
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				if vpc := sdk.ToString(in.VpcId); vpc != "" {
					return vpc, nil
				}
			}
		}
	}
	return "", fmt.Errorf("cannot tell the cluster's VPC for subnet discovery: no Node names an instance tagged %s; "+
		"tag the instances, or list subnets in the cloud config (aws.nlb.subnets) or annotation %s",
		clusterTagKey(b.cfg.ClusterName), AnnotationSubnets)
}

// discoverSubnets finds an NLB's subnets in the nodes' VPC (chooseSubnets).
func (b *Backend) discoverSubnets(ctx context.Context, r request, nodes []*v1.Node) ([]string, error) {
	vpc, err := b.clusterVPC(ctx, nodes)
	if err != nil {
		return nil, err
	}
	vpcFilter := []ec2types.Filter{{Name: sdk.String("vpc-id"), Values: []string{vpc}}}
	subnets, err := b.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: vpcFilter})
	if err != nil {
		return nil, fmt.Errorf("discover subnets: %w", err)
	}
	tables, err := b.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: vpcFilter})
	if err != nil {
		return nil, fmt.Errorf("read the route tables of %s: %w", vpc, err)
	}
	var ids, zones []string
	for _, s := range subnets.Subnets {
		ids = append(ids, sdk.ToString(s.SubnetId))
		zones = append(zones, sdk.ToString(s.AvailabilityZone))
	}
	slices.Sort(zones)
	zoneTypes := map[string]string{}
	if len(zones) > 0 {
		az, err := b.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{
			ZoneNames: slices.Compact(zones), AllAvailabilityZones: sdk.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("read the zones of the subnets: %w", err)
		}
		for _, z := range az.AvailabilityZones {
			zoneTypes[sdk.ToString(z.ZoneName)] = sdk.ToString(z.ZoneType)
		}
	}
	public := publicSubnets(tables.RouteTables, ids)
	role := "kubernetes.io/role/elb"
	if r.Scheme == schemeInternal {
		role = "kubernetes.io/role/internal-elb"
	}
	var cands []subnetInfo
	for _, s := range subnets.Subnets {
		tags := fromEC2Tags(s.Tags)
		info := subnetInfo{ID: sdk.ToString(s.SubnetId), Zone: sdk.ToString(s.AvailabilityZone),
			PlainZone: zoneTypes[sdk.ToString(s.AvailabilityZone)] == "availability-zone",
			Public:    public[sdk.ToString(s.SubnetId)], IPv6: hasIPv6(s),
			ClusterTag: tags[clusterTagKey(b.cfg.ClusterName)]}
		_, info.Role = tags[role]
		info.Role = info.Role && (tags[role] == "1" || tags[role] == "")
		for k := range tags {
			if strings.HasPrefix(k, "kubernetes.io/cluster/") && info.ClusterTag == "" {
				info.OtherCluster = true
			}
		}
		cands = append(cands, info)
	}
	chosen, skipped := chooseSubnets(cands, r.Scheme == schemeInternal, r.DualStack)
	if len(chosen) == 0 {
		var why []string
		for _, id := range slices.Sorted(maps.Keys(skipped)) {
			why = append(why, id+": "+skipped[id])
		}
		return nil, fmt.Errorf("no subnet of %s can take a %s NLB (%s); tag or route the subnets, or list them in annotation %s",
			vpc, r.Scheme, strings.Join(why, "; "), AnnotationSubnets)
	}
	return chosen, nil
}
