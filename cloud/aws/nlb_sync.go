package aws

import (
	"context"
	"errors"
	"fmt"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/config"
)

// syncTargets makes the group's instance targets exactly want: one
// register and one deregister call at most.
func (b *Backend) syncTargets(ctx context.Context, tgARN string, want []string) error {
	out, err := b.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: sdk.String(tgARN)})
	if err != nil {
		return fmt.Errorf("describe targets of %s: %w", tgARN, err)
	}
	have := map[string]bool{}
	for _, d := range out.TargetHealthDescriptions {
		if d.Target != nil {
			have[sdk.ToString(d.Target.Id)] = true
		}
	}
	var add, remove []elbtypes.TargetDescription
	for _, id := range want {
		if !have[id] {
			add = append(add, elbtypes.TargetDescription{Id: sdk.String(id)})
		}
		delete(have, id)
	}
	for id := range have {
		remove = append(remove, elbtypes.TargetDescription{Id: sdk.String(id)})
	}
	if len(add) > 0 {
		if _, err := b.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: sdk.String(tgARN), Targets: add}); err != nil {
			return fmt.Errorf("register %d targets in %s: %w", len(add), tgARN, err)
		}
	}
	if len(remove) > 0 {
		if _, err := b.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: sdk.String(tgARN), Targets: remove}); err != nil {
			return fmt.Errorf("deregister %d targets from %s: %w", len(remove), tgARN, err)
		}
	}
	if len(add)+len(remove) > 0 {
		b.log.V(1).Info("Targets changed", "targetGroup", tgARN, "added", len(add), "removed", len(remove))
	}
	return nil
}

// syncListeners gives each port a listener forwarding to its group and
// deletes listeners on ports the Service no longer has.
func (b *Backend) syncListeners(ctx context.Context, svc *v1.Service, lbARN string, ports []listenerPort, groups []string) error {
	out, err := b.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: sdk.String(lbARN)})
	if err != nil {
		return fmt.Errorf("describe listeners of %s: %w", lbName(svc), err)
	}
	have := map[int32]elbtypes.Listener{}
	for _, l := range out.Listeners {
		have[sdk.ToInt32(l.Port)] = l
	}
	for i, p := range ports {
		action := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: sdk.String(groups[i])}}
		l, ok := have[p.Port]
		delete(have, p.Port)
		switch {
		case !ok:
			_, err = b.elb.CreateListener(ctx, &elb.CreateListenerInput{
				LoadBalancerArn: sdk.String(lbARN), Port: sdk.Int32(p.Port), Protocol: p.Protocol,
				DefaultActions: action, Tags: elbTags(b.ownerTags(svc)),
			})
		case l.Protocol != p.Protocol || forwardsTo(l) != groups[i]:
			_, err = b.elb.ModifyListener(ctx, &elb.ModifyListenerInput{
				ListenerArn: l.ListenerArn, Port: sdk.Int32(p.Port), Protocol: p.Protocol, DefaultActions: action,
			})
		}
		if err != nil {
			return fmt.Errorf("listener on port %d of %s: %w", p.Port, lbName(svc), err)
		}
	}
	for port, l := range have {
		if _, err := b.elb.DeleteListener(ctx, &elb.DeleteListenerInput{ListenerArn: l.ListenerArn}); err != nil && apiCode(err) != "ListenerNotFound" {
			return fmt.Errorf("delete listener on port %d of %s: %w", port, lbName(svc), err)
		}
	}
	return nil
}

func forwardsTo(l elbtypes.Listener) string {
	for _, a := range l.DefaultActions {
		if a.Type == elbtypes.ActionTypeEnumForward {
			return sdk.ToString(a.TargetGroupArn)
		}
	}
	return ""
}

// removeTargetGroup deletes one of the Service's groups; one gone already
// is not an error.
func (b *Backend) removeTargetGroup(ctx context.Context, svc *v1.Service, arn string) error {
	if _, err := b.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: sdk.String(arn)}); err != nil && apiCode(err) != "TargetGroupNotFound" {
		return fmt.Errorf("delete target group %s: %w", arn, err)
	}
	b.log.Info("Deleted target group", "service", config.Key(svc), "targetGroup", arn)
	return nil
}

// updateTargets follows a node change on an existing NLB; with no NLB
// there is nothing to update (Ensure creates it). Only the groups tagged
// as the Service's are touched: a group someone else attached to the NLB
// keeps its targets.
func (b *Backend) updateTargets(ctx context.Context, svc *v1.Service, nodes []*v1.Node, r request) error {
	lb, err := b.findLB(ctx, svc)
	if err != nil || lb == nil {
		return err
	}
	out, err := b.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{LoadBalancerArn: lb.LoadBalancerArn})
	if err != nil {
		return fmt.Errorf("describe target groups of %s: %w", lbName(svc), err)
	}
	owned, err := b.ownedByName(ctx, svc, out.TargetGroups)
	if err != nil {
		return err
	}
	targets, groupsOf, err := b.targets(ctx, nodes, r, sdk.ToString(lb.VpcId))
	if err != nil {
		return err
	}
	ports, err := nlbPorts(svc)
	if err != nil {
		return err
	}
	ranges, explicit, err := sourceRanges(svc)
	if err != nil {
		return err
	}
	if err := b.syncSecurity(ctx, svc, lb, b.checks(svc, ports, r), groupsOf, ranges, explicit); err != nil {
		return err
	}
	for _, tg := range owned {
		if err := b.syncTargets(ctx, sdk.ToString(tg.TargetGroupArn), targets); err != nil {
			return err
		}
	}
	return nil
}

// deleteNLB deletes the Service's NLB (and with it its listeners), then
// every target group tagged as the Service's, attached or orphaned by an
// earlier failure.
func (b *Backend) deleteNLB(ctx context.Context, svc *v1.Service) error {
	lb, err := b.findLB(ctx, svc)
	if err != nil {
		if conflict := (*ConflictError)(nil); !errors.As(err, &conflict) {
			return err
		}
	}
	if lb != nil {
		if _, err := b.elb.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn}); err != nil {
			return fmt.Errorf("delete NLB %s: %w", lbName(svc), err)
		}
		b.log.Info("Deleted NLB", "service", config.Key(svc), "name", lbName(svc))
	}
	groups, err := b.ownedTargetGroups(ctx, svc)
	if err != nil {
		return err
	}
	for _, arn := range groups {
		if err := b.removeTargetGroup(ctx, svc, arn); err != nil {
			return err
		}
	}
	return b.deleteSG(ctx, svc)
}

// ownedTargetGroups lists every target group tagged as the Service's.
// Berth's group names start with "b-", so only those have their tags read.
func (b *Backend) ownedTargetGroups(ctx context.Context, svc *v1.Service) ([]string, error) {
	var candidates, owned []string
	p := elb.NewDescribeTargetGroupsPaginator(b.elb, &elb.DescribeTargetGroupsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list target groups: %w", err)
		}
		for _, tg := range page.TargetGroups {
			if name := sdk.ToString(tg.TargetGroupName); len(name) == 32 && name[:2] == "b-" {
				candidates = append(candidates, sdk.ToString(tg.TargetGroupArn))
			}
		}
	}
	tags, err := b.elbTagsOfMany(ctx, candidates)
	if err != nil {
		return nil, err
	}
	for _, arn := range candidates {
		if b.owns(tags[arn], svc) {
			owned = append(owned, arn)
		}
	}
	return owned, nil
}
