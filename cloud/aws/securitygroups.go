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
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/config"
)

// sgName names the security group Berth gives the Service's NLB.
func sgName(svc *v1.Service) string { return "berth-" + lbName(svc) }

// rule is one ingress rule with a single source: a CIDR or a group.
type rule struct {
	Protocol string // "tcp" or "udp"
	From, To int32
	CIDR     string
	Group    string
}

// sourceRanges returns the client ranges the NLB admits:
// spec.loadBalancerSourceRanges, else the annotation, else everyone (of
// the Service's address families). explicit is false in the last case.
func sourceRanges(svc *v1.Service) (ranges []string, explicit bool, err error) {
	restricted, prefixes, err := config.SourceRanges(svc)
	if err != nil {
		return nil, false, err
	}
	if restricted {
		for _, p := range prefixes {
			ranges = append(ranges, p.String())
		}
		slices.Sort(ranges)
		return slices.Compact(ranges), true, nil
	}
	ranges = []string{"0.0.0.0/0"}
	if slices.Contains(svc.Spec.IPFamilies, v1.IPv6Protocol) {
		ranges = append(ranges, "::/0")
	}
	return ranges, false, nil
}

func ruleProtocol(p elbtypes.ProtocolEnum) string { return strings.ToLower(string(p)) }

// frontendRules admit the client ranges on each listener port.
func frontendRules(ports []listenerPort, ranges []string) []rule {
	var out []rule
	for _, p := range ports {
		for _, c := range ranges {
			out = append(out, rule{Protocol: ruleProtocol(p.Protocol), From: p.Port, To: p.Port, CIDR: c})
		}
	}
	return out
}

// backendRules admit the NLB's security group to the NodePorts and the
// health check ports on the nodes.
func backendRules(sg string, ports []listenerPort, checks []healthCheck) []rule {
	var out []rule
	add := func(r rule) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	for _, p := range ports {
		add(rule{Protocol: ruleProtocol(p.Protocol), From: p.NodePort, To: p.NodePort, Group: sg})
	}
	for _, hc := range checks {
		var port int32
		if _, err := fmt.Sscan(hc.Port, &port); err == nil {
			add(rule{Protocol: "tcp", From: port, To: port, Group: sg})
		}
	}
	return out
}

// findSG returns the Service's managed group in the VPC ("" for any VPC),
// found by its tags, so that a group Berth made is found again whatever
// its name; nil if there is none, or a *ConflictError if a group with its
// name is not Berth's.
func (b *Backend) findSG(ctx context.Context, svc *v1.Service, vpc string) (*ec2types.SecurityGroup, error) {
	owned, err := b.ownedSGs(ctx, svc, vpc)
	if err != nil || len(owned) > 0 {
		return first(owned), err
	}
	for id := range b.madeSGs.recent(svc.UID, freshFor) {
		// Made by this process a moment ago; EC2 does not list it yet.
		return &ec2types.SecurityGroup{GroupId: sdk.String(id), GroupName: sdk.String(sgName(svc)), VpcId: sdk.String(vpc)}, nil
	}
	out, err := b.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: withVPC(vpc,
		ec2types.Filter{Name: sdk.String("group-name"), Values: []string{sgName(svc)}})})
	if err != nil {
		return nil, fmt.Errorf("find security group %s: %w", sgName(svc), err)
	}
	for _, g := range out.SecurityGroups {
		// EC2 may show a new group to this describe and not to the one
		// by tags just before: its tags decide.
		if t := fromEC2Tags(g.Tags); t[TagCluster] == b.cfg.ClusterName && t[TagServiceUID] == string(svc.UID) {
			return &g, nil
		}
		return nil, &ConflictError{Kind: "security group", Name: sgName(svc)}
	}
	return nil, nil
}

// ownedSGs returns the groups in the VPC ("" for any) tagged as the
// Service's, the one named as Berth names it first.
func (b *Backend) ownedSGs(ctx context.Context, svc *v1.Service, vpc string) ([]ec2types.SecurityGroup, error) {
	out, err := b.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: withVPC(vpc,
		ec2types.Filter{Name: sdk.String("tag:" + TagCluster), Values: []string{b.cfg.ClusterName}},
		ec2types.Filter{Name: sdk.String("tag:" + TagServiceUID), Values: []string{string(svc.UID)}})})
	if err != nil {
		return nil, fmt.Errorf("find the security groups of Service %s: %w", config.Key(svc), err)
	}
	groups := out.SecurityGroups
	named := func(g ec2types.SecurityGroup) int {
		if sdk.ToString(g.GroupName) == sgName(svc) {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(groups, func(x, y ec2types.SecurityGroup) int { return named(y) - named(x) })
	return groups, nil
}

func withVPC(vpc string, filters ...ec2types.Filter) []ec2types.Filter {
	if vpc != "" {
		filters = append(filters, ec2types.Filter{Name: sdk.String("vpc-id"), Values: []string{vpc}})
	}
	return filters
}

func first[T any](s []T) *T {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// ensureSG returns the ID of the Service's managed group in the VPC,
// created if missing.
func (b *Backend) ensureSG(ctx context.Context, svc *v1.Service, vpc string, r request) (string, error) {
	sg, err := b.findSG(ctx, svc, vpc)
	if err != nil {
		return "", err
	}
	if sg != nil {
		return sdk.ToString(sg.GroupId), nil
	}
	out, err := b.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: sdk.String(sgName(svc)), VpcId: sdk.String(vpc),
		Description: sdk.String("Berth: clients of the NLB of Service " + config.Key(svc)),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup,
			Tags: ec2Tags(mergedTags(b.ownerTags(svc), r.Tags))}},
	})
	if apiCode(err) == "InvalidGroup.Duplicate" {
		// Made by an earlier call, not listed by EC2 yet.
		return "", api.NewRetryError(fmt.Sprintf("security group %s exists but is not visible yet", sgName(svc)), visibilityRetry)
	}
	if err != nil {
		return "", fmt.Errorf("create security group %s: %w", sgName(svc), err)
	}
	b.madeSGs.add(svc.UID, sdk.ToString(out.GroupId), struct{}{})
	b.log.Info("Created the NLB's security group", "service", config.Key(svc), "group", sdk.ToString(out.GroupId))
	return sdk.ToString(out.GroupId), nil
}

// vpcOf returns the VPC of the subnets, checking that each has an IPv6
// CIDR when the NLB is dual-stack (AWS would refuse it).
func (b *Backend) vpcOf(ctx context.Context, subnets []string, dualStack bool) (string, error) {
	out, err := b.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: subnets})
	if err != nil {
		return "", fmt.Errorf("describe subnets %v: %w", subnets, err)
	}
	if len(out.Subnets) == 0 {
		return "", fmt.Errorf("subnets %v not found", subnets)
	}
	for _, s := range out.Subnets {
		if dualStack && !hasIPv6(s) {
			return "", fmt.Errorf("subnet %s has no IPv6 CIDR, which the NLB of a dual-stack Service needs", sdk.ToString(s.SubnetId))
		}
	}
	return sdk.ToString(out.Subnets[0].VpcId), nil
}

// rulesOf flattens a group's ingress permissions into single-source
// rules, keeping those keep accepts.
func rulesOf(perms []ec2types.IpPermission, keep func(rule) bool) []rule {
	var out []rule
	for _, p := range perms {
		base := rule{Protocol: sdk.ToString(p.IpProtocol), From: sdk.ToInt32(p.FromPort), To: sdk.ToInt32(p.ToPort)}
		var all []rule
		for _, c := range p.IpRanges {
			r := base
			r.CIDR = sdk.ToString(c.CidrIp)
			all = append(all, r)
		}
		for _, c := range p.Ipv6Ranges {
			r := base
			r.CIDR = sdk.ToString(c.CidrIpv6)
			all = append(all, r)
		}
		for _, g := range p.UserIdGroupPairs {
			r := base
			r.Group = sdk.ToString(g.GroupId)
			all = append(all, r)
		}
		for _, r := range all {
			if keep(r) {
				out = append(out, r)
			}
		}
	}
	return out
}

func permissions(rules []rule) []ec2types.IpPermission {
	out := make([]ec2types.IpPermission, len(rules))
	for i, r := range rules {
		p := ec2types.IpPermission{IpProtocol: sdk.String(r.Protocol), FromPort: sdk.Int32(r.From), ToPort: sdk.Int32(r.To)}
		switch {
		case r.Group != "":
			p.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: sdk.String(r.Group)}}
		case strings.Contains(r.CIDR, ":"):
			p.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: sdk.String(r.CIDR)}}
		default:
			p.IpRanges = []ec2types.IpRange{{CidrIp: sdk.String(r.CIDR)}}
		}
		out[i] = p
	}
	return out
}

// syncRules makes the group's rules among have (those Berth manages in it
// for the NLB's group nlbSG) exactly want: revoke first, so a shrinking
// list never passes through a wider one, then authorize. EC2 may describe
// a group as it was before a change for a while: the rules this process
// wrote in the last freshFor stand for have, or the change just made
// would be undone or, worse, a narrowing missed.
func (b *Backend) syncRules(ctx context.Context, nlbSG, group string, have, want []rule) error {
	if written, ok := b.rulesWritten.recent(types.UID(nlbSG), freshFor)[group]; ok {
		have = written
	}
	var add, remove []rule
	for _, r := range want {
		if !slices.Contains(have, r) {
			add = append(add, r)
		}
	}
	for _, r := range have {
		if !slices.Contains(want, r) {
			remove = append(remove, r)
		}
	}
	if len(remove) > 0 {
		_, err := b.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: sdk.String(group), IpPermissions: permissions(remove)})
		if err != nil && apiCode(err) != "InvalidPermission.NotFound" {
			return fmt.Errorf("revoke %d rules of %s: %w", len(remove), group, err)
		}
	}
	if len(add) > 0 {
		_, err := b.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sdk.String(group), IpPermissions: permissions(add)})
		if err != nil && apiCode(err) != "InvalidPermission.Duplicate" {
			return fmt.Errorf("authorize %d rules in %s: %w", len(add), group, err)
		}
	}
	if len(add)+len(remove) > 0 {
		b.rulesWritten.done(types.UID(nlbSG), group) // noted anew: its time is now
		b.rulesWritten.add(types.UID(nlbSG), group, want)
	}
	return nil
}

// syncFrontend makes the NLB's group admit exactly the client ranges on
// the listener ports.
func (b *Backend) syncFrontend(ctx context.Context, sgID string, want []rule) error {
	out, err := b.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{sgID}})
	if err != nil {
		return fmt.Errorf("describe security group %s: %w", sgID, err)
	}
	var have []rule
	for _, g := range out.SecurityGroups {
		have = append(have, rulesOf(g.IpPermissions, func(rule) bool { return true })...)
	}
	return b.syncRules(ctx, sgID, sgID, have, want)
}

// syncBackend gives the nodes' security groups the rules that admit the
// NLB's group, and takes them from every other group. The rules Berth
// manages in a node group are exactly those whose source is the NLB's
// group, so a node group's other rules are never touched. A node's group
// is the one tagged kubernetes.io/cluster/<clusterName>, or its only one.
func (b *Backend) syncBackend(ctx context.Context, sgID string, instanceGroups map[string][]string, want []rule) error {
	candidates := map[string]bool{}
	for _, gs := range instanceGroups {
		for _, g := range gs {
			candidates[g] = true
		}
	}
	nodeGroups := map[string]bool{}
	if len(candidates) > 0 {
		out, err := b.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: slices.Sorted(maps.Keys(candidates))})
		if err != nil {
			return fmt.Errorf("describe the nodes' security groups: %w", err)
		}
		tagged := map[string]bool{}
		for _, g := range out.SecurityGroups {
			if _, ok := fromEC2Tags(g.Tags)[clusterTagKey(b.cfg.ClusterName)]; ok {
				tagged[sdk.ToString(g.GroupId)] = true
			}
		}
		for id, gs := range instanceGroups {
			picked := slices.DeleteFunc(slices.Clone(gs), func(g string) bool { return !tagged[g] })
			if len(picked) == 0 && len(gs) == 1 {
				picked = gs
			}
			if len(picked) != 1 {
				b.log.Info("Cannot tell the node's security group: tag one kubernetes.io/cluster/<clusterName>", "instance", id, "groups", gs)
				continue
			}
			nodeGroups[picked[0]] = true
		}
	}
	// Every group holding a rule from the NLB's group, and the nodes'.
	out, err := b.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: sdk.String("ip-permission.group-id"), Values: []string{sgID}},
	}})
	if err != nil {
		return fmt.Errorf("find the groups that admit %s: %w", sgID, err)
	}
	have := map[string][]rule{}
	for _, g := range out.SecurityGroups {
		have[sdk.ToString(g.GroupId)] = rulesOf(g.IpPermissions, func(r rule) bool { return r.Group == sgID })
	}
	// Groups this process gave rules a moment ago, which the listing
	// may leave out.
	for g := range b.rulesWritten.recent(types.UID(sgID), freshFor) {
		if _, ok := have[g]; !ok && g != sgID {
			have[g] = nil
		}
	}
	for g := range nodeGroups {
		if _, ok := have[g]; !ok {
			have[g] = nil
		}
	}
	for _, g := range slices.Sorted(maps.Keys(have)) {
		var w []rule
		if nodeGroups[g] {
			w = want
		}
		if err := b.syncRules(ctx, sgID, g, have[g], w); err != nil {
			return err
		}
	}
	return nil
}

// deleteSG removes the rules that admit each of the Service's groups from
// every group, then the group itself. While the deleted NLB's interfaces
// still use it, AWS answers DependencyViolation and a retry is asked for.
func (b *Backend) deleteSG(ctx context.Context, svc *v1.Service) error {
	groups, err := b.ownedSGs(ctx, svc, "")
	if err != nil {
		return err
	}
	ids := map[string]bool{} // true: listed
	for _, sg := range groups {
		ids[sdk.ToString(sg.GroupId)] = true
	}
	for id := range b.madeSGs.recent(svc.UID, freshFor) {
		if _, listed := ids[id]; !listed {
			ids[id] = false
		}
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if err := b.syncBackend(ctx, id, nil, nil); err != nil {
			return err
		}
		_, err := b.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sdk.String(id)})
		switch apiCode(err) {
		case "":
		case "InvalidGroup.NotFound":
			if !ids[id] {
				// Made a moment ago and not known to EC2 yet: gone
				// only once it is known.
				return api.NewRetryError(fmt.Sprintf("security group %s was created a moment ago and EC2 does not show it yet; deleting it later", id), visibilityRetry)
			}
		case "DependencyViolation":
			return api.NewRetryError(fmt.Sprintf("security group %s is still in use (the deleted NLB's interfaces take a while to go); deleting it later", id), inUseRetry)
		default:
			return fmt.Errorf("delete security group %s: %w", id, err)
		}
		b.madeSGs.done(svc.UID, id)
		b.rulesWritten.forget(types.UID(id))
		b.log.Info("Deleted the NLB's security group", "service", config.Key(svc), "group", id)
	}
	return nil
}

// checks returns the health check of each port's target group.
func (b *Backend) checks(svc *v1.Service, ports []listenerPort, r request) []healthCheck {
	out := make([]healthCheck, len(ports))
	for i, p := range ports {
		out[i] = healthCheckFor(svc, p, r.HealthCheck, b.cfg.NLB.UDPHealthCheckPort)
	}
	return out
}

// syncSecurity enforces the Service's source ranges with the NLB's
// security group and lets that group reach the nodes. An NLB without
// Berth's group (made by an older Berth, or adopted) is left as it is
// unless the Service restricts its sources, which then cannot be
// enforced: that is an error the user sees, never a silently open NLB.
func (b *Backend) syncSecurity(ctx context.Context, svc *v1.Service, lb *elbtypes.LoadBalancer, checks []healthCheck,
	groupsOf map[string][]string, ranges []string, explicit bool, extra []string) error {
	ports, err := nlbPorts(svc)
	if err != nil {
		return err
	}
	sg, err := b.findSG(ctx, svc, sdk.ToString(lb.VpcId))
	if err != nil {
		return err
	}
	if sg == nil || !slices.Contains(lb.SecurityGroups, sdk.ToString(sg.GroupId)) {
		if explicit {
			return fmt.Errorf("the NLB %s has no security group of Berth's (made by an older Berth, or adopted), and AWS adds "+
				"security groups to an NLB only at creation: loadBalancerSourceRanges cannot be enforced; delete and recreate the Service", lbName(svc))
		}
		if len(extra) > 0 {
			return fmt.Errorf("the NLB %s has no security group of Berth's (made by an older Berth, or adopted): annotation %s "+
				"cannot be applied; delete and recreate the Service", lbName(svc), AnnotationExtraSecurityGroups)
		}
		return nil
	}
	id := sdk.ToString(sg.GroupId)
	// The NLB's groups are Berth's and the annotation's, no others.
	want := append([]string{id}, extra...)
	if !sameGroups(lb.SecurityGroups, want) {
		if _, err := b.elb.SetSecurityGroups(ctx, &elb.SetSecurityGroupsInput{LoadBalancerArn: lb.LoadBalancerArn, SecurityGroups: want}); err != nil {
			return fmt.Errorf("set the security groups of NLB %s: %w", lbName(svc), err)
		}
	}
	if err := b.syncFrontend(ctx, id, frontendRules(ports, ranges)); err != nil {
		return err
	}
	return b.syncBackend(ctx, id, groupsOf, backendRules(id, ports, checks))
}

// sameGroups reports whether two lists hold the same groups.
func sameGroups(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
