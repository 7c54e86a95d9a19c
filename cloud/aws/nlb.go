package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/config"
)

// provisioningRetry is how soon the service controller asks again while
// an NLB is still provisioning.
const provisioningRetry = 10 * time.Second

// listenerPort is one listener and its target group.
type listenerPort struct {
	Protocol elbtypes.ProtocolEnum
	Port     int32
	NodePort int32
}

// lbName is the NLB's name: upstream's default, "a" and the UID without
// dashes, 32 characters, stable for the Service's life.
func lbName(svc *v1.Service) string { return cloudprovider.DefaultLoadBalancerName(svc) }

// tgName names a target group after everything that cannot change on it
// (its protocol and NodePort, and the Service), so a new NodePort gets a
// new group and the old one is swept.
func tgName(svc *v1.Service, p listenerPort) string {
	key := fmt.Appendf(nil, "%s/%s/%d/%d", svc.UID, p.Protocol, p.Port, p.NodePort)
	if ipv6Targets(svc) {
		// An IPv6 group is another group: a Service that Berth served
		// with IPv4 groups before IPv6 groups existed gets new ones, and
		// the old ones go as stale.
		key = append(key, "/ipv6"...)
	}
	sum := sha256.Sum256(key)
	return "b-" + hex.EncodeToString(sum[:])[:30]
}

// nlbPorts returns the Service's listeners, or an error a user can act on.
func nlbPorts(svc *v1.Service) ([]listenerPort, error) {
	var out []listenerPort
	seen := map[int32]bool{}
	for _, p := range svc.Spec.Ports {
		proto := elbtypes.ProtocolEnumTcp
		switch p.Protocol {
		case v1.ProtocolTCP, "":
		case v1.ProtocolUDP:
			proto = elbtypes.ProtocolEnumUdp
		default:
			return nil, fmt.Errorf("port %d: an NLB forwards TCP and UDP, not %s", p.Port, p.Protocol)
		}
		if p.NodePort == 0 {
			return nil, fmt.Errorf("port %d has no NodePort (allocateLoadBalancerNodePorts is false); an NLB's instance targets need one", p.Port)
		}
		if seen[p.Port] {
			return nil, fmt.Errorf("port %d is listed twice (TCP and UDP); an NLB listener has one target group: use two Services", p.Port)
		}
		seen[p.Port] = true
		out = append(out, listenerPort{Protocol: proto, Port: p.Port, NodePort: p.NodePort})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the Service has no ports")
	}
	return out, nil
}

// healthCheck is a target group's health check settings; zero fields are
// left to AWS's defaults (and, in an annotation override, not given).
type healthCheck struct {
	Protocol                              elbtypes.ProtocolEnum
	Port                                  string
	Path                                  string
	Interval, Timeout, Healthy, Unhealthy int32
}

// healthCheckFor checks kube-proxy's health check NodePort for
// externalTrafficPolicy Local, so only nodes with a ready endpoint get
// traffic; for a UDP port (which cannot be checked itself) kube-proxy's
// health server; otherwise the traffic port itself. The Service's health
// check annotations override each field.
func healthCheckFor(svc *v1.Service, p listenerPort, override healthCheck, udpPort int32) healthCheck {
	hc := healthCheck{Protocol: elbtypes.ProtocolEnumTcp, Port: "traffic-port", Interval: 10, Healthy: 2, Unhealthy: 2}
	switch {
	case svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal && svc.Spec.HealthCheckNodePort != 0:
		hc.Protocol, hc.Port, hc.Path = elbtypes.ProtocolEnumHttp, strconv.Itoa(int(svc.Spec.HealthCheckNodePort)), "/healthz"
	case p.Protocol == elbtypes.ProtocolEnumUdp:
		hc.Protocol, hc.Port, hc.Path = elbtypes.ProtocolEnumHttp, strconv.Itoa(int(udpPort)), "/healthz"
	}
	if override.Protocol != "" {
		hc.Protocol = override.Protocol
		if hc.Protocol == elbtypes.ProtocolEnumTcp {
			hc.Path = ""
		}
	}
	if override.Port != "" {
		hc.Port = override.Port
	}
	if override.Path != "" && hc.Protocol != elbtypes.ProtocolEnumTcp {
		hc.Path = override.Path
	}
	for _, f := range []struct{ dst, src *int32 }{
		{&hc.Interval, &override.Interval}, {&hc.Timeout, &override.Timeout},
		{&hc.Healthy, &override.Healthy}, {&hc.Unhealthy, &override.Unhealthy},
	} {
		if *f.src != 0 {
			*f.dst = *f.src
		}
	}
	return hc
}

// differs reports whether the group's health check differs from hc in a
// field hc sets.
func (hc healthCheck) differs(tg *elbtypes.TargetGroup) bool {
	ne := func(want int32, have *int32) bool { return want != 0 && want != sdk.ToInt32(have) }
	return tg.HealthCheckProtocol != hc.Protocol || sdk.ToString(tg.HealthCheckPort) != hc.Port ||
		(hc.Path != "" && sdk.ToString(tg.HealthCheckPath) != hc.Path) ||
		ne(hc.Interval, tg.HealthCheckIntervalSeconds) || ne(hc.Timeout, tg.HealthCheckTimeoutSeconds) ||
		ne(hc.Healthy, tg.HealthyThresholdCount) || ne(hc.Unhealthy, tg.UnhealthyThresholdCount)
}

func elbProtocol(s string) elbtypes.ProtocolEnum { return elbtypes.ProtocolEnum(s) }

func hostnameStatus(lb *elbtypes.LoadBalancer) *v1.LoadBalancerStatus {
	return &v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{Hostname: sdk.ToString(lb.DNSName)}}}
}

// ensureNLB creates or repairs the Service's NLB, target groups, targets
// and listeners, removes stale ones, and asks to be called again while the
// NLB is provisioning.
func (b *Backend) ensureNLB(ctx context.Context, svc *v1.Service, nodes []*v1.Node, r request) (*v1.LoadBalancerStatus, error) {
	if r.IPv6Targets && !r.DualStack {
		// ELB attaches IPv6 target groups to dualstack NLBs only.
		return nil, fmt.Errorf("the Service's primary family is IPv6, so its targets are the nodes' IPv6 addresses, which only a dualstack NLB forwards to: "+
			"remove annotation %s=ipv4", AnnotationIPAddressType)
	}
	ports, err := nlbPorts(svc)
	if err != nil {
		return nil, err
	}
	ranges, explicit, err := sourceRanges(svc)
	if err != nil {
		return nil, err
	}
	lb, shown, err := b.nlbShown(ctx, svc)
	if err != nil {
		return nil, err
	}
	if lb == nil {
		if lb, err = b.createLB(ctx, svc, r, nodes); err != nil {
			return nil, err
		}
	} else if string(lb.Scheme) != r.Scheme {
		return nil, fmt.Errorf("the NLB %s is %s and the Service asks for %s; an NLB's scheme cannot change: delete and recreate the Service",
			lbName(svc), lb.Scheme, r.Scheme)
	}
	lbARN := sdk.ToString(lb.LoadBalancerArn)
	if err := b.ensureCrossZone(ctx, lbARN, r); err != nil {
		return nil, fmt.Errorf("NLB %s: %w", lbName(svc), err)
	}
	attached, err := b.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{LoadBalancerArn: lb.LoadBalancerArn})
	if err != nil {
		return nil, fmt.Errorf("describe target groups of %s: %w", lbName(svc), err)
	}
	owned, err := b.ownedByName(ctx, svc, attached.TargetGroups)
	if err != nil {
		return nil, err
	}
	for _, tg := range owned {
		b.madeGroups.done(svc.UID, sdk.ToString(tg.TargetGroupArn)) // visible now
	}
	targets, groupsOf, err := b.targets(ctx, nodes, r, sdk.ToString(lb.VpcId))
	if err != nil {
		return nil, err
	}
	if err := b.syncSecurity(ctx, svc, lb, b.checks(svc, ports, r), groupsOf, ranges, explicit, r.ExtraSecurityGroups); err != nil {
		return nil, err
	}
	groups := make([]string, len(ports))
	for i, p := range ports {
		name := tgName(svc, p)
		tg, err := b.ensureTargetGroup(ctx, svc, p, sdk.ToString(lb.VpcId), owned[name], r)
		if err != nil {
			return nil, err
		}
		groups[i] = tg
		delete(owned, name)
		if err := b.syncTargets(ctx, tg, targets); err != nil {
			return nil, err
		}
	}
	replaced, listeners := b.syncListeners(ctx, svc, lbARN, ports, groups)
	if listeners != nil && !errors.As(listeners, new(*api.RetryError)) {
		return nil, listeners
	}
	// What is left of the Service's groups serves no port any more, nor
	// do the Service's groups the listeners forwarded to before: those
	// are found even while a listing leaves them out.
	stale := make([]string, 0, len(owned)+len(replaced))
	for _, tg := range owned {
		stale = append(stale, sdk.ToString(tg.TargetGroupArn))
	}
	replaced = slices.DeleteFunc(replaced, func(arn string) bool { return slices.Contains(groups, arn) })
	more, unproven, err := b.detachedOwned(ctx, svc, replaced)
	if err != nil {
		return nil, err
	}
	stale = append(stale, more...)
	if err := b.removeStale(ctx, svc, stale); err != nil {
		return nil, err
	}
	if listeners == nil {
		listeners = unproven
	}
	if listeners != nil {
		return nil, listeners
	}
	if lb.State != nil && lb.State.Code != elbtypes.LoadBalancerStateEnumActive {
		if !shown {
			// Its state is the one CreateLoadBalancer gave: look again
			// soon, as ELB shows a new NLB within seconds.
			return nil, api.NewRetryError(fmt.Sprintf("NLB %s is %s (ELB does not show it yet)", lbName(svc), lb.State.Code), visibilityRetry)
		}
		return nil, api.NewRetryError(fmt.Sprintf("NLB %s is %s", lbName(svc), lb.State.Code), provisioningRetry)
	}
	return hostnameStatus(lb), nil
}

func (b *Backend) createLB(ctx context.Context, svc *v1.Service, r request, nodes []*v1.Node) (*elbtypes.LoadBalancer, error) {
	scheme := r.Scheme
	subnets, err := b.subnets(ctx, r, nodes)
	if err != nil {
		return nil, err
	}
	vpc, err := b.vpcOf(ctx, subnets, r.DualStack)
	if err != nil {
		return nil, err
	}
	// AWS gives an NLB security groups only at creation: every NLB gets
	// one, so that source ranges set later can be enforced.
	sg, err := b.ensureSG(ctx, svc, vpc, r)
	if err != nil {
		return nil, err
	}
	in := &elb.CreateLoadBalancerInput{
		Name:           sdk.String(lbName(svc)),
		Type:           elbtypes.LoadBalancerTypeEnumNetwork,
		Scheme:         elbtypes.LoadBalancerSchemeEnum(scheme),
		Subnets:        subnets,
		SecurityGroups: append([]string{sg}, r.ExtraSecurityGroups...),
		IpAddressType:  elbtypes.IpAddressTypeIpv4,
		Tags:           elbTags(mergedTags(b.ownerTags(svc), r.Tags)),
	}
	if r.DualStack {
		// A dualstack NLB forwards IPv6 UDP clients only with a source NAT
		// prefix per subnet (subnetMappings), which can only be chosen
		// here; TCP is not affected, and a UDP port added later needs it.
		in.IpAddressType = elbtypes.IpAddressTypeDualstack
		in.EnablePrefixForIpv6SourceNat = elbtypes.EnablePrefixForIpv6SourceNatEnumOn
	}
	if in.SubnetMappings, err = b.subnetMappings(ctx, subnets, r); err != nil {
		return nil, err
	}
	if in.SubnetMappings != nil {
		in.Subnets = nil
	}
	out, err := b.elb.CreateLoadBalancer(ctx, in)
	if apiCode(err) == "DuplicateLoadBalancerName" {
		// An NLB of this name exists that describes did not show: most
		// likely this Service's own, made by an earlier call (ELB shows
		// a new NLB late), or another's. The next call finds it and
		// reads its tags, and never takes one that is not the Service's.
		return nil, api.NewRetryError(fmt.Sprintf("create NLB %s: an NLB of that name exists but ELB does not show it yet "+
			"(made by an earlier call, or not Berth's); its tags are checked on the next try", lbName(svc)), visibilityRetry)
	}
	if apiCode(err) == "InvalidSecurityGroup" {
		// The group was made a moment ago and ELB does not see it yet.
		return nil, api.NewRetryError(fmt.Sprintf("create NLB %s: its new security group %s is not visible yet: %v",
			lbName(svc), sg, err), visibilityRetry)
	}
	if err != nil {
		return nil, fmt.Errorf("create NLB %s: %w", lbName(svc), err)
	}
	if len(out.LoadBalancers) == 0 {
		return nil, fmt.Errorf("create NLB %s: the response names no load balancer", lbName(svc))
	}
	// AWS answers a create that repeats an existing NLB's settings with
	// that NLB; those settings include the Service's own security group,
	// so the NLB is the Service's.
	b.madeLBs.add(svc.UID, out.LoadBalancers[0])
	b.log.Info("Created NLB", "service", config.Key(svc), "name", lbName(svc), "scheme", scheme, "subnets", subnets)
	return &out.LoadBalancers[0], nil
}

// ensureTargetGroup returns the ARN of the group for one port, created if
// missing, with its health check brought in line. known is the group when
// it is already attached to the NLB (and known to be the Service's); nil
// means look it up by name, as one made by a call that failed before
// attaching it.
func (b *Backend) ensureTargetGroup(ctx context.Context, svc *v1.Service, p listenerPort, vpc string, known *elbtypes.TargetGroup, r request) (string, error) {
	name := tgName(svc, p)
	hc := healthCheckFor(svc, p, r.HealthCheck, b.cfg.NLB.UDPHealthCheckPort)
	if known == nil {
		var err error
		if known, err = b.findTargetGroup(ctx, svc, name); err != nil {
			return "", err
		}
	}
	if known != nil {
		arn := sdk.ToString(known.TargetGroupArn)
		if hc.differs(known) {
			if _, err := b.elb.ModifyTargetGroup(ctx, modifyHealthCheck(arn, hc)); err != nil {
				return "", fmt.Errorf("update the health check of target group %s: %w", name, err)
			}
		}
		if err := b.ensureTargetGroupAttributes(ctx, arn, r); err != nil {
			return "", fmt.Errorf("target group %s: %w", name, err)
		}
		return arn, nil
	}
	in := &elb.CreateTargetGroupInput{
		Name:                       sdk.String(name),
		Protocol:                   p.Protocol,
		Port:                       sdk.Int32(p.NodePort),
		VpcId:                      sdk.String(vpc),
		TargetType:                 elbtypes.TargetTypeEnumInstance,
		HealthCheckProtocol:        hc.Protocol,
		HealthCheckPort:            sdk.String(hc.Port),
		HealthCheckPath:            optString(hc.Path),
		HealthCheckIntervalSeconds: optInt32(hc.Interval),
		HealthCheckTimeoutSeconds:  optInt32(hc.Timeout),
		HealthyThresholdCount:      optInt32(hc.Healthy),
		UnhealthyThresholdCount:    optInt32(hc.Unhealthy),
		Tags:                       elbTags(mergedTags(b.ownerTags(svc), r.Tags)),
	}
	if r.IPv6Targets {
		// ip targets: the nodes' IPv6 InternalIPs, where kube-proxy
		// serves the NodePort. Instance targets in an IPv6 group would
		// need every instance to have a primary IPv6 address (ELB
		// refuses others with InvalidTarget) and reach that address,
		// which need not be the node's.
		in.TargetType = elbtypes.TargetTypeEnumIp
		in.IpAddressType = elbtypes.TargetGroupIpAddressTypeEnumIpv6
	}
	created, err := b.elb.CreateTargetGroup(ctx, in)
	if apiCode(err) == "DuplicateTargetGroupName" {
		// Made by an earlier call with other settings and not shown yet,
		// or another's: the next call finds it and reads its tags.
		return "", api.NewRetryError(fmt.Sprintf("create target group %s: a group of that name exists but ELB does not show it yet "+
			"(made by an earlier call, or not Berth's); its tags are checked on the next try", name), visibilityRetry)
	}
	if err != nil {
		return "", fmt.Errorf("create target group %s: %w", name, err)
	}
	if len(created.TargetGroups) == 0 {
		return "", fmt.Errorf("create target group %s: the response names no group", name)
	}
	arn := sdk.ToString(created.TargetGroups[0].TargetGroupArn)
	b.madeGroups.add(svc.UID, arn, struct{}{})
	if err := b.ensureTargetGroupAttributes(ctx, arn, r); err != nil {
		return "", fmt.Errorf("target group %s: %w", name, err)
	}
	return arn, nil
}

func modifyHealthCheck(arn string, hc healthCheck) *elb.ModifyTargetGroupInput {
	return &elb.ModifyTargetGroupInput{
		TargetGroupArn:             sdk.String(arn),
		HealthCheckProtocol:        hc.Protocol,
		HealthCheckPort:            sdk.String(hc.Port),
		HealthCheckPath:            optString(hc.Path),
		HealthCheckIntervalSeconds: optInt32(hc.Interval),
		HealthCheckTimeoutSeconds:  optInt32(hc.Timeout),
		HealthyThresholdCount:      optInt32(hc.Healthy),
		UnhealthyThresholdCount:    optInt32(hc.Unhealthy),
	}
}

// optString and optInt32 leave zero values out of a request.
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return sdk.String(s)
}

func optInt32(v int32) *int32 {
	if v == 0 {
		return nil
	}
	return sdk.Int32(v)
}
