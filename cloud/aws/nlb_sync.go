package aws

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/config"
)

// inUseRetry is how soon a target group AWS still holds is tried again.
const inUseRetry = 15 * time.Second

// removeStale deletes the groups that serve no port any more: those given
// (by ARN) and those an earlier call could not delete. One AWS still holds
// is remembered and a retry is asked for.
func (b *Backend) removeStale(ctx context.Context, svc *v1.Service, arns []string) error {
	for _, arn := range arns {
		b.stale.add(svc.UID, arn, struct{}{})
	}
	var retry error
	for _, arn := range b.stale.list(svc.UID) {
		err := b.removeTargetGroup(ctx, svc, arn)
		switch {
		case err == nil:
			b.stale.done(svc.UID, arn)
		case errors.As(err, new(*api.RetryError)):
			retry = err
		default:
			return err
		}
	}
	return retry
}

// targetChunk bounds the targets of one RegisterTargets or
// DeregisterTargets call.
const targetChunk = 100

// syncTargets makes the group's instance targets exactly want.
// Deregistration comes first, calls carry at most targetChunk targets, and
// a chunk refused for one bad target (InvalidTarget: an instance that
// stopped since it was listed) is registered one by one, so one bad
// instance never keeps the others out; the bad ones are logged and tried
// again on the next call. A target that is still draining after an
// earlier deregistration counts as not registered.
func (b *Backend) syncTargets(ctx context.Context, tgARN string, want []string) error {
	out, err := b.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: sdk.String(tgARN)})
	if err != nil {
		return fmt.Errorf("describe targets of %s: %w", tgARN, err)
	}
	have := map[string]bool{}
	for _, d := range out.TargetHealthDescriptions {
		if d.Target == nil || (d.TargetHealth != nil && d.TargetHealth.State == elbtypes.TargetHealthStateEnumDraining) {
			continue
		}
		have[sdk.ToString(d.Target.Id)] = true
	}
	var add, remove []elbtypes.TargetDescription
	for _, id := range want {
		if !have[id] {
			add = append(add, elbtypes.TargetDescription{Id: sdk.String(id)})
		}
		delete(have, id)
	}
	for _, id := range slices.Sorted(maps.Keys(have)) {
		remove = append(remove, elbtypes.TargetDescription{Id: sdk.String(id)})
	}
	for chunk := range slices.Chunk(remove, targetChunk) {
		if _, err := b.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: sdk.String(tgARN), Targets: chunk}); err != nil {
			return fmt.Errorf("deregister %d targets from %s: %w", len(chunk), tgARN, err)
		}
	}
	var bad []string
	for chunk := range slices.Chunk(add, targetChunk) {
		refused, err := b.register(ctx, tgARN, chunk)
		if err != nil {
			return err
		}
		bad = append(bad, refused...)
	}
	if len(bad) > 0 {
		b.log.Info("AWS refused some targets (stopped or terminated instances); the others are registered", "targetGroup", tgARN, "refused", bad)
	}
	if len(add)+len(remove) > 0 {
		b.log.V(1).Info("Targets changed", "targetGroup", tgARN, "added", len(add)-len(bad), "removed", len(remove))
	}
	return nil
}

// register registers one chunk, falling back to one target per call when
// AWS refuses the chunk for an invalid target; it returns the refused.
func (b *Backend) register(ctx context.Context, tgARN string, chunk []elbtypes.TargetDescription) ([]string, error) {
	_, err := b.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: sdk.String(tgARN), Targets: chunk})
	if err == nil {
		return nil, nil
	}
	if apiCode(err) != "InvalidTarget" {
		return nil, fmt.Errorf("register %d targets in %s: %w", len(chunk), tgARN, err)
	}
	var refused []string
	for _, t := range chunk {
		_, err := b.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: sdk.String(tgARN), Targets: []elbtypes.TargetDescription{t}})
		switch apiCode(err) {
		case "":
		case "InvalidTarget":
			refused = append(refused, sdk.ToString(t.Id))
		default:
			return nil, fmt.Errorf("register target %s in %s: %w", sdk.ToString(t.Id), tgARN, err)
		}
	}
	return refused, nil
}

// syncListeners gives each port a listener forwarding to its group and
// deletes listeners on ports the Service no longer has. It returns the
// groups the changed and deleted listeners forwarded to. Listeners this
// process made that the listing leaves out (ELB shows them late) count as
// they were made.
func (b *Backend) syncListeners(ctx context.Context, svc *v1.Service, lbARN string, ports []listenerPort, groups []string) ([]string, error) {
	out, err := b.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: sdk.String(lbARN)})
	if err != nil {
		return nil, fmt.Errorf("describe listeners of %s: %w", lbName(svc), err)
	}
	have := map[int32]elbtypes.Listener{}
	made := b.madeListeners.recent(svc.UID, madeFor)
	for _, l := range out.Listeners {
		have[sdk.ToInt32(l.Port)] = l
		delete(made, sdk.ToString(l.ListenerArn))
		b.madeListeners.done(svc.UID, sdk.ToString(l.ListenerArn)) // shown now
	}
	for _, l := range made {
		if sdk.ToString(l.LoadBalancerArn) == lbARN {
			have[sdk.ToInt32(l.Port)] = l
		}
	}
	var replaced []string
	for i, p := range ports {
		action := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: sdk.String(groups[i])}}
		l, ok := have[p.Port]
		delete(have, p.Port)
		var changed []elbtypes.Listener
		switch {
		case !ok:
			var made *elb.CreateListenerOutput
			made, err = b.elb.CreateListener(ctx, &elb.CreateListenerInput{
				LoadBalancerArn: sdk.String(lbARN), Port: sdk.Int32(p.Port), Protocol: p.Protocol,
				DefaultActions: action, Tags: elbTags(b.ownerTags(svc)),
			})
			if apiCode(err) == "DuplicateListener" {
				// One the listing did not show yet, forwarding elsewhere:
				// changed on the next call, which sees it.
				return nil, api.NewRetryError(fmt.Sprintf("NLB %s has a listener on port %d that ELB does not show yet; changing it on the next try",
					lbName(svc), p.Port), visibilityRetry)
			}
			if made != nil {
				changed = made.Listeners
			}
		case l.Protocol != p.Protocol || forwardsTo(l) != groups[i]:
			var modified *elb.ModifyListenerOutput
			modified, err = b.elb.ModifyListener(ctx, &elb.ModifyListenerInput{
				ListenerArn: l.ListenerArn, Port: sdk.Int32(p.Port), Protocol: p.Protocol, DefaultActions: action,
			})
			if modified != nil && b.madeListeners.has(svc.UID, sdk.ToString(l.ListenerArn)) {
				changed = modified.Listeners
			}
			replaced = append(replaced, forwardsTo(l))
		}
		if err != nil {
			return nil, listenerError(svc, p.Port, err)
		}
		for _, c := range changed {
			b.madeListeners.add(svc.UID, sdk.ToString(c.ListenerArn), c)
		}
	}
	for port, l := range have {
		if _, err := b.elb.DeleteListener(ctx, &elb.DeleteListenerInput{ListenerArn: l.ListenerArn}); err != nil && apiCode(err) != "ListenerNotFound" {
			return nil, fmt.Errorf("delete listener on port %d of %s: %w", port, lbName(svc), err)
		}
		b.madeListeners.done(svc.UID, sdk.ToString(l.ListenerArn))
		replaced = append(replaced, forwardsTo(l))
	}
	return slices.DeleteFunc(replaced, func(arn string) bool { return arn == "" }), nil
}

// listenerError says what failed on a port's listener; a listener this
// process made that ELB does not know by its ARN yet is a retry.
func listenerError(svc *v1.Service, port int32, err error) error {
	if apiCode(err) == "ListenerNotFound" {
		return api.NewRetryError(fmt.Sprintf("listener on port %d of %s: ELB does not show it yet: %v", port, lbName(svc), err), visibilityRetry)
	}
	return fmt.Errorf("listener on port %d of %s: %w", port, lbName(svc), err)
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
// is not an error. AWS refuses to delete a group for a while after its
// listener let go of it (ResourceInUse): the caller tries again later.
func (b *Backend) removeTargetGroup(ctx context.Context, svc *v1.Service, arn string) error {
	if _, err := b.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: sdk.String(arn)}); err != nil && apiCode(err) != "TargetGroupNotFound" {
		if apiCode(err) == "ResourceInUse" {
			return api.NewRetryError(fmt.Sprintf("target group %s is still in use by AWS after its listener let go of it; deleting it later", arn), inUseRetry)
		}
		return fmt.Errorf("delete target group %s: %w", arn, err)
	}
	b.madeGroups.done(svc.UID, arn)
	b.log.Info("Deleted target group", "service", config.Key(svc), "targetGroup", arn)
	return nil
}

// updateTargets follows a node change on an existing NLB; with no NLB
// there is nothing to update (Ensure creates it). Only the groups tagged
// as the Service's are touched: a group someone else attached to the NLB
// keeps its targets.
func (b *Backend) updateTargets(ctx context.Context, svc *v1.Service, nodes []*v1.Node, r request) error {
	lb, err := b.nlbOf(ctx, svc)
	if err != nil || lb == nil {
		return err // with no NLB, Ensure creates it
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
	if err := b.syncSecurity(ctx, svc, lb, b.checks(svc, ports, r), groupsOf, ranges, explicit, r.ExtraSecurityGroups); err != nil {
		return err
	}
	// The groups this process made a moment ago may be missing from the
	// listing; those waiting to be deleted get no targets.
	arns := slices.Collect(maps.Keys(b.madeGroups.recent(svc.UID, madeFor)))
	for _, tg := range owned {
		arns = append(arns, sdk.ToString(tg.TargetGroupArn))
	}
	slices.Sort(arns)
	for _, arn := range slices.Compact(arns) {
		if slices.Contains(b.stale.list(svc.UID), arn) {
			continue
		}
		if err := b.syncTargets(ctx, arn, targets); err != nil {
			return err
		}
	}
	return nil
}

// deleteNLB deletes the Service's NLB (and with it its listeners), then
// every target group tagged as the Service's, attached or orphaned by an
// earlier failure. An NLB or group describes do not show yet is deleted
// too: by what this process remembers creating, and by the NLBs the
// Service's groups are attached to.
func (b *Backend) deleteNLB(ctx context.Context, svc *v1.Service) error {
	lb, err := b.findLB(ctx, svc)
	if err != nil {
		// Not Berth's, or with no tags shown: not deleted. One of Berth's
		// whose tags are not shown yet is found through its groups below.
		if !errors.As(err, new(*ConflictError)) && !errors.As(err, new(*api.RetryError)) {
			return err
		}
	}
	groups, attachedTo, unknown, err := b.ownedTargetGroups(ctx, svc)
	if err != nil {
		return err
	}
	if lb != nil {
		untaggedYet, err := b.namedGroupsOf(ctx, svc, lb)
		if err != nil {
			return err
		}
		groups = append(groups, untaggedYet...)
	}
	var lbs []string
	for _, known := range []*elbtypes.LoadBalancer{lb, b.madeLBs.recent(svc.UID, madeFor)} {
		if known != nil {
			lbs = append(lbs, sdk.ToString(known.LoadBalancerArn))
		}
	}
	more, err := b.ownedLBs(ctx, svc, slices.DeleteFunc(attachedTo, func(arn string) bool { return slices.Contains(lbs, arn) }))
	if err != nil {
		return err
	}
	slices.Sort(lbs)
	lbs = slices.Compact(append(lbs, more...))
	for _, arn := range lbs {
		if _, err := b.elb.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: sdk.String(arn)}); err != nil && apiCode(err) != "LoadBalancerNotFound" {
			return fmt.Errorf("delete NLB %s: %w", lbName(svc), err)
		}
		b.deletedLBs.add(svc.UID, arn, struct{}{})
		b.log.Info("Deleted NLB", "service", config.Key(svc), "name", lbName(svc), "arn", arn)
	}
	groups = append(groups, b.madeGroups.list(svc.UID)...)
	groups = append(groups, b.stale.list(svc.UID)...)
	slices.Sort(groups)
	var inUse error
	for _, arn := range slices.Compact(groups) {
		err := b.removeTargetGroup(ctx, svc, arn)
		if errors.As(err, new(*api.RetryError)) {
			inUse = err // the others may go already
			b.stale.add(svc.UID, arn, struct{}{})
			continue
		}
		if err != nil {
			return err
		}
		b.stale.done(svc.UID, arn)
	}
	b.madeLBs.forget(svc.UID)
	b.madeListeners.forget(svc.UID) // deleted with the NLB
	if err := b.deleteSG(ctx, svc); err != nil {
		return err
	}
	if inUse == nil && len(lbs) > 0 {
		// Groups attached to the NLB that no listing showed yet would be
		// left: one more pass lists them again.
		return api.NewRetryError(fmt.Sprintf("NLB %s deleted; its target groups are looked for once more", lbName(svc)), visibilityRetry)
	}
	if inUse == nil && len(unknown) > 0 {
		return api.NewRetryError(fmt.Sprintf("target groups %v show no tags yet and may be this Service's: looking again once ELB shows them", unknown), visibilityRetry)
	}
	if inUse == nil {
		b.deletedLBs.forget(svc.UID)
	}
	return inUse
}

// namedGroupsOf returns the groups attached to the Service's NLB that
// show no tags yet (ELB shows a group's tags late, and after a restart
// nothing remembers making it) and bear the name Berth gives the group of
// one of the Service's ports: found only by listing tags, they would be
// left behind once the NLB is gone.
func (b *Backend) namedGroupsOf(ctx context.Context, svc *v1.Service, lb *elbtypes.LoadBalancer) ([]string, error) {
	ports, err := nlbPorts(svc)
	if err != nil {
		return nil, nil
	}
	names := make([]string, len(ports))
	for i, p := range ports {
		names[i] = tgName(svc, p)
	}
	out, err := b.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{LoadBalancerArn: lb.LoadBalancerArn})
	if err != nil {
		return nil, fmt.Errorf("describe target groups of %s: %w", lbName(svc), err)
	}
	var arns []string
	for _, tg := range out.TargetGroups {
		if slices.Contains(names, sdk.ToString(tg.TargetGroupName)) {
			arns = append(arns, sdk.ToString(tg.TargetGroupArn))
		}
	}
	tags, err := b.elbTagsOfMany(ctx, arns)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(arns, func(arn string) bool { return len(tags[arn]) > 0 }), nil
}

// nlbLeftovers reports whether target groups or security groups of the
// Service's NLB remain: ones this process waits to delete or made a
// moment ago, or ones tagged as the Service's.
func (b *Backend) nlbLeftovers(ctx context.Context, svc *v1.Service) (bool, error) {
	if len(b.stale.list(svc.UID))+len(b.madeGroups.list(svc.UID))+len(b.madeSGs.list(svc.UID))+len(b.deletedLBs.list(svc.UID)) > 0 {
		return true, nil
	}
	groups, _, unknown, err := b.ownedTargetGroups(ctx, svc)
	if err != nil || len(groups)+len(unknown) > 0 {
		return len(groups)+len(unknown) > 0, err
	}
	sgs, err := b.ownedSGs(ctx, svc, "")
	return len(sgs) > 0, err
}

// ownedTargetGroups lists every target group tagged as the Service's, and
// the load balancers they are attached to. Berth's group names start with
// "b-", so only those have their tags read. unknown are the Berth-named
// groups that ELB shows with no tags at all, first seen so less than
// madeFor ago: any Service's, maybe this one's (see untaggedGroups).
func (b *Backend) ownedTargetGroups(ctx context.Context, svc *v1.Service) (owned, attachedTo, unknown []string, err error) {
	var candidates []string
	lbsOf := map[string][]string{}
	p := elb.NewDescribeTargetGroupsPaginator(b.elb, &elb.DescribeTargetGroupsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("list target groups: %w", err)
		}
		for _, tg := range page.TargetGroups {
			if name := sdk.ToString(tg.TargetGroupName); len(name) == 32 && name[:2] == "b-" {
				candidates = append(candidates, sdk.ToString(tg.TargetGroupArn))
				lbsOf[sdk.ToString(tg.TargetGroupArn)] = tg.LoadBalancerArns
			}
		}
	}
	tags, err := b.elbTagsOfMany(ctx, candidates)
	if err != nil {
		return nil, nil, nil, err
	}
	var untagged []string
	for _, arn := range candidates {
		if b.owns(tags[arn], svc) {
			owned = append(owned, arn)
			attachedTo = append(attachedTo, lbsOf[arn]...)
		}
		if len(tags[arn]) == 0 {
			untagged = append(untagged, arn)
		}
	}
	slices.Sort(attachedTo)
	return owned, slices.Compact(attachedTo), b.untaggedGroups(untagged), nil
}

// ownedLBs returns those of the load balancers (by ARN) that are tagged
// as the Service's by Berth.
func (b *Backend) ownedLBs(ctx context.Context, svc *v1.Service, arns []string) ([]string, error) {
	tags, err := b.elbTagsOfMany(ctx, arns)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(arns, func(arn string) bool { return !b.owns(tags[arn], svc) }), nil
}

// untaggedGroups notes the Berth-named target groups that ELB shows with
// no tags (all of them, of every Service: untagged is the whole list) and
// returns those first seen so less than madeFor ago. ELB shows a new
// group's tags within seconds; until then such a group may be the
// Service's, found by nothing but its tags after a restart (a group whose
// listener went with a port change just before: its name hashes the old
// port). Get and Delete wait for it. One that stays without tags longer
// (someone else's, named like Berth's) is not waited for again.
func (b *Backend) untaggedGroups(untagged []string) []string {
	for _, arn := range b.untagged.list("") {
		if !slices.Contains(untagged, arn) {
			b.untagged.done("", arn)
		}
	}
	for _, arn := range untagged {
		b.untagged.add("", arn, struct{}{})
	}
	recent := b.untagged.recent("", madeFor)
	return slices.DeleteFunc(untagged, func(arn string) bool { _, ok := recent[arn]; return !ok })
}
