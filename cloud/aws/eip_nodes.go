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

// unsuitableNodeError says a node cannot carry an Elastic IP; the next node
// in rank is tried.
type unsuitableNodeError struct {
	Node, Why string
}

func (e *unsuitableNodeError) Error() string { return "node " + e.Node + ": " + e.Why }

// foreignSecondaries returns the secondary addresses of the interface eni
// that no Berth Elastic IP of this cluster records as its placement: some
// other agent (the Amazon VPC CNI, which hands the primary interface's
// secondary addresses to pods, or an operator) manages them, and may take
// or release Berth's too.
func foreignSecondaries(eni string, secondaries []string, placements []privateAddress) []string {
	var out []string
	for _, a := range secondaries {
		if !slices.ContainsFunc(placements, func(p privateAddress) bool { return p.ENI == eni && p.Addr == a }) {
			out = append(out, a)
		}
	}
	return out
}

// checkEIPNode refuses, before Berth assigns an address on it, a node in a
// private subnet (an Elastic IP needs the subnet's route to an internet
// gateway) and a node whose primary interface holds secondary addresses
// Berth did not place (foreignSecondaries).
func (b *Backend) checkEIPNode(ctx context.Context, node string, in ec2types.Instance, eni string, secondaries []string) error {
	vpc, subnet := sdk.ToString(in.VpcId), sdk.ToString(in.SubnetId)
	tables, err := b.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []ec2types.Filter{
		{Name: sdk.String("vpc-id"), Values: []string{vpc}},
	}})
	if err != nil {
		return fmt.Errorf("read the route tables of %s: %w", vpc, err)
	}
	if !publicSubnets(tables.RouteTables, []string{subnet})[subnet] {
		return &unsuitableNodeError{Node: node, Why: fmt.Sprintf("its subnet %s has no route to an internet gateway, "+
			"so an Elastic IP mapped to it would not be reachable", subnet)}
	}
	if len(secondaries) == 0 {
		return nil
	}
	out, err := b.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{
		{Name: sdk.String("tag:" + TagCluster), Values: []string{b.cfg.ClusterName}},
		{Name: sdk.String("tag-key"), Values: []string{TagPrivateAddress}},
	}})
	if err != nil {
		return fmt.Errorf("list the cluster's Elastic IP placements: %w", err)
	}
	var placements []privateAddress
	for p := range b.placed {
		placements = append(placements, p)
	}
	for _, a := range out.Addresses {
		if p, ok := parsePrivateAddress(fromEC2Tags(a.Tags)[TagPrivateAddress]); ok {
			placements = append(placements, p)
		}
	}
	if foreign := foreignSecondaries(eni, secondaries, placements); len(foreign) > 0 {
		return &unsuitableNodeError{Node: node, Why: fmt.Sprintf("its primary interface %s holds secondary addresses "+
			"Berth did not assign (%s): another agent, such as the Amazon VPC CNI, manages them", eni, strings.Join(foreign, ", "))}
	}
	return nil
}

// instanceOf returns the instance with the ID from a DescribeInstances
// answer.
func instanceOf(out *ec2.DescribeInstancesOutput, id string) (ec2types.Instance, bool) {
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if sdk.ToString(in.InstanceId) == id {
				return in, true
			}
		}
	}
	return ec2types.Instance{}, false
}
