package aws

import (
	"context"
	"fmt"
	"maps"
	"slices"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/config"
)

// findLB returns the Service's NLB, nil if there is none, a
// *ConflictError if one with its name is not Berth's, or a retry if it
// shows no tags at all (untagged). One this process made or adopted
// counts as the Service's while ELB does not show its tags yet.
func (b *Backend) findLB(ctx context.Context, svc *v1.Service) (*elbtypes.LoadBalancer, error) {
	name := lbName(svc)
	out, err := b.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{Names: []string{name}})
	if apiCode(err) == "LoadBalancerNotFound" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe load balancer %s: %w", name, err)
	}
	if len(out.LoadBalancers) == 0 {
		return nil, nil
	}
	lb := out.LoadBalancers[0]
	arn := sdk.ToString(lb.LoadBalancerArn)
	tags, err := b.elbTagsOf(ctx, arn)
	if err != nil {
		return nil, err
	}
	made := b.madeLBs.recent(svc.UID, madeFor)
	switch {
	case b.owns(tags[arn], svc):
		b.madeLBs.forget(svc.UID) // shown with its tags now
	case made != nil && sdk.ToString(made.LoadBalancerArn) == arn:
		// Made or adopted by this process; ELB does not show its tags yet.
	case b.upstreamOwns(tags[arn], svc):
		// Made by the upstream provider for this Service: Berth takes it
		// over by adding its own tags, and keeps its DNS name.
		if _, err := b.elb.AddTags(ctx, &elb.AddTagsInput{ResourceArns: []string{arn}, Tags: elbTags(b.ownerTags(svc))}); err != nil {
			return nil, fmt.Errorf("adopt the upstream provider's NLB %s: %w", name, err)
		}
		// ELB may show the added tags late: until then the NLB is known
		// as the Service's as if Berth had made it.
		b.madeLBs.add(svc.UID, lb)
		b.log.Info("Adopted the NLB the upstream AWS provider made for the Service", "service", config.Key(svc), "name", name)
	case len(tags[arn]) == 0:
		return nil, untagged("load balancer", name)
	default:
		return nil, &ConflictError{Kind: "load balancer", Name: name}
	}
	return &lb, nil
}

// nlbOf returns the Service's NLB as findLB does or, when describes do not
// show it yet, as this process created it a moment ago.
func (b *Backend) nlbOf(ctx context.Context, svc *v1.Service) (*elbtypes.LoadBalancer, error) {
	lb, _, err := b.nlbShown(ctx, svc)
	return lb, err
}

// nlbShown is nlbOf, and whether ELB showed the NLB (false: it is the one
// this process remembers creating, as CreateLoadBalancer described it).
func (b *Backend) nlbShown(ctx context.Context, svc *v1.Service) (*elbtypes.LoadBalancer, bool, error) {
	lb, err := b.findLB(ctx, svc)
	if err != nil || lb != nil {
		return lb, lb != nil, err
	}
	return b.madeLBs.recent(svc.UID, madeFor), false, nil
}

// untagged is the error about a resource with Berth's name and no tags at
// all: ELB may not show the tags of a new one yet (one Berth made before
// a restart), so it is a retry, and the message also says what to do if
// it is not Berth's.
func untagged(kind, name string) error {
	return api.NewRetryError(fmt.Sprintf("a %s named %s shows no tags (yet): if it is this Service's, ELB shows its tags soon; "+
		"if not, rename or delete it", kind, name), visibilityRetry)
}

// elbTagsOfMany returns the tags of any number of ELBv2 resources by ARN,
// in calls of 20 (the API's limit).
func (b *Backend) elbTagsOfMany(ctx context.Context, arns []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for chunk := range slices.Chunk(arns, 20) {
		tags, err := b.elbTagsOf(ctx, chunk...)
		if err != nil {
			return nil, err
		}
		maps.Copy(out, tags)
	}
	return out, nil
}

// elbTagsOf returns the tags of up to 20 ELBv2 resources by ARN.
func (b *Backend) elbTagsOf(ctx context.Context, arns ...string) (map[string]map[string]string, error) {
	out, err := b.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: arns})
	if err != nil {
		return nil, fmt.Errorf("describe tags: %w", err)
	}
	m := make(map[string]map[string]string, len(out.TagDescriptions))
	for _, d := range out.TagDescriptions {
		m[sdk.ToString(d.ResourceArn)] = fromELBTags(d.Tags)
	}
	return m, nil
}

// ownedByName returns, by name, the groups among tgs (those attached to
// the Service's NLB) that are tagged as the Service's, by Berth or by the
// upstream provider before Berth adopted the NLB, reading their tags in
// one call per 20 groups. An upstream group's name is never one Berth
// uses, so it is replaced by Berth's own and then deleted.
func (b *Backend) ownedByName(ctx context.Context, svc *v1.Service, tgs []elbtypes.TargetGroup) (map[string]*elbtypes.TargetGroup, error) {
	arns := make([]string, len(tgs))
	for i, tg := range tgs {
		arns[i] = sdk.ToString(tg.TargetGroupArn)
	}
	owned, err := b.ownedARNs(ctx, svc, arns)
	if err != nil {
		return nil, err
	}
	out := map[string]*elbtypes.TargetGroup{}
	for i := range tgs {
		if slices.Contains(owned, arns[i]) {
			out[sdk.ToString(tgs[i].TargetGroupName)] = &tgs[i]
		}
	}
	return out, nil
}

// ownedARNs returns those of the groups (by ARN, tied to the Service's
// NLB) that are tagged as the Service's, by Berth or by the upstream
// provider, or made by this process.
func (b *Backend) ownedARNs(ctx context.Context, svc *v1.Service, arns []string) ([]string, error) {
	tags, err := b.elbTagsOfMany(ctx, arns)
	if err != nil {
		return nil, err
	}
	made := b.madeGroups.list(svc.UID) // ELB may not show their tags yet
	var out []string
	for _, arn := range arns {
		if t := tags[arn]; b.owns(t, svc) || b.upstreamOwns(t, svc) || slices.Contains(made, arn) {
			out = append(out, arn)
		}
	}
	return out, nil
}

// detachedOwned returns which of the groups the NLB's listeners let go of
// now or a moment ago are the Service's, and so to be deleted. One that
// shows no tags at all (ELB may show a new group's tags late) is kept
// aside, for up to madeFor, and a retry is asked for; one tagged as
// another's is left alone.
func (b *Backend) detachedOwned(ctx context.Context, svc *v1.Service, replaced []string) (owned []string, retry, err error) {
	candidates := append(replaced, b.detached.list(svc.UID)...)
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	tags, err := b.elbTagsOfMany(ctx, candidates)
	if apiCode(err) == "TargetGroupNotFound" {
		b.detached.forget(svc.UID) // one is gone: check only what was let go of now
		candidates = replaced
		tags, err = b.elbTagsOfMany(ctx, candidates)
	}
	if err != nil {
		return nil, nil, err
	}
	recent := b.detached.recent(svc.UID, madeFor)
	made := b.madeGroups.list(svc.UID)
	for _, arn := range candidates {
		_, waiting := recent[arn]
		switch t := tags[arn]; {
		case b.owns(t, svc) || b.upstreamOwns(t, svc) || slices.Contains(made, arn):
			owned = append(owned, arn)
			b.detached.done(svc.UID, arn)
		case len(t) == 0 && (waiting || slices.Contains(replaced, arn)):
			b.detached.add(svc.UID, arn, struct{}{})
			retry = api.NewRetryError(fmt.Sprintf("target group %s, let go of by the NLB %s, shows no tags yet; deleting it once they show it is the Service's",
				arn, lbName(svc)), visibilityRetry)
		default:
			b.detached.done(svc.UID, arn)
		}
	}
	return owned, retry, nil
}

// findTargetGroup returns the group with the name, nil if there is none,
// or a *ConflictError if it is not the Service's.
func (b *Backend) findTargetGroup(ctx context.Context, svc *v1.Service, name string) (*elbtypes.TargetGroup, error) {
	out, err := b.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
	if apiCode(err) == "TargetGroupNotFound" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe target group %s: %w", name, err)
	}
	if len(out.TargetGroups) == 0 {
		return nil, nil
	}
	tg := out.TargetGroups[0]
	arn := sdk.ToString(tg.TargetGroupArn)
	tags, err := b.elbTagsOf(ctx, arn)
	if err != nil {
		return nil, err
	}
	switch {
	case b.owns(tags[arn], svc) || slices.Contains(b.madeGroups.list(svc.UID), arn):
	case len(tags[arn]) == 0:
		return nil, untagged("target group", name)
	default:
		return nil, &ConflictError{Kind: "target group", Name: name}
	}
	return &tg, nil
}
