package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/api/v1alpha1"
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
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d/%d", svc.UID, p.Protocol, p.Port, p.NodePort))
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

// healthCheck is a target group's health check settings.
type healthCheck struct {
	Protocol elbtypes.ProtocolEnum
	Port     string
	Path     string
}

// healthCheckFor checks kube-proxy's health check NodePort for
// externalTrafficPolicy Local, so only nodes with a ready endpoint get
// traffic; otherwise the traffic port itself.
func healthCheckFor(svc *v1.Service) healthCheck {
	if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal && svc.Spec.HealthCheckNodePort != 0 {
		return healthCheck{Protocol: elbtypes.ProtocolEnumHttp, Port: strconv.Itoa(int(svc.Spec.HealthCheckNodePort)), Path: "/healthz"}
	}
	return healthCheck{Protocol: elbtypes.ProtocolEnumTcp, Port: "traffic-port"}
}

func (b *Backend) scheme(svc *v1.Service) (string, error) {
	s, ok := svc.Annotations[v1alpha1.AnnotationAWSScheme]
	if !ok {
		return b.cfg.NLB.Scheme, nil
	}
	if s = strings.TrimSpace(s); !validScheme(s) {
		return "", fmt.Errorf("annotation %s=%q: want %q or %q", v1alpha1.AnnotationAWSScheme, s, schemeInternetFacing, schemeInternal)
	}
	return s, nil
}

// findLB returns the Service's NLB, nil if there is none, or a
// *ConflictError if one with its name is not Berth's.
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
	tags, err := b.elbTagsOf(ctx, sdk.ToString(lb.LoadBalancerArn))
	if err != nil {
		return nil, err
	}
	if !b.owns(tags[sdk.ToString(lb.LoadBalancerArn)], svc) {
		return nil, &ConflictError{Kind: "load balancer", Name: name}
	}
	return &lb, nil
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

// subnets picks the NLB's subnets: the annotation, else the cloud config,
// else one per availability zone among those tagged for this cluster and
// scheme (kubernetes.io/role/elb or kubernetes.io/role/internal-elb).
func (b *Backend) subnets(ctx context.Context, svc *v1.Service, scheme string) ([]string, error) {
	if a := strings.TrimSpace(svc.Annotations[v1alpha1.AnnotationAWSSubnets]); a != "" {
		var ids []string
		for s := range strings.SplitSeq(a, ",") {
			if s = strings.TrimSpace(s); s != "" {
				ids = append(ids, s)
			}
		}
		slices.Sort(ids)
		return slices.Compact(ids), nil
	}
	if len(b.cfg.NLB.Subnets) > 0 {
		return b.cfg.NLB.Subnets, nil
	}
	role := "kubernetes.io/role/elb"
	if scheme == schemeInternal {
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
		z, id := sdk.ToString(s.AvailabilityZone), sdk.ToString(s.SubnetId)
		if cur, ok := byZone[z]; !ok || id < cur {
			byZone[z] = id
		}
	}
	if len(byZone) == 0 {
		return nil, fmt.Errorf("no subnet is tagged kubernetes.io/cluster/%s and %s; tag the subnets, or list them in annotation %s",
			b.cfg.ClusterName, role, v1alpha1.AnnotationAWSSubnets)
	}
	ids := make([]string, 0, len(byZone))
	for _, id := range byZone {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func hostnameStatus(lb *elbtypes.LoadBalancer) *v1.LoadBalancerStatus {
	return &v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{Hostname: sdk.ToString(lb.DNSName)}}}
}

// ensureNLB creates or repairs the Service's NLB, target groups, targets
// and listeners, removes stale ones, and asks to be called again while the
// NLB is provisioning.
func (b *Backend) ensureNLB(ctx context.Context, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	ports, err := nlbPorts(svc)
	if err != nil {
		return nil, err
	}
	scheme, err := b.scheme(svc)
	if err != nil {
		return nil, err
	}
	lb, err := b.findLB(ctx, svc)
	if err != nil {
		return nil, err
	}
	if lb == nil {
		if lb, err = b.createLB(ctx, svc, scheme); err != nil {
			return nil, err
		}
	} else if string(lb.Scheme) != scheme {
		return nil, fmt.Errorf("the NLB %s is %s and the Service asks for %s; an NLB's scheme cannot change: delete and recreate the Service",
			lbName(svc), lb.Scheme, scheme)
	}
	lbARN := sdk.ToString(lb.LoadBalancerArn)
	attached, err := b.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{LoadBalancerArn: lb.LoadBalancerArn})
	if err != nil {
		return nil, fmt.Errorf("describe target groups of %s: %w", lbName(svc), err)
	}
	owned, err := b.ownedByName(ctx, svc, attached.TargetGroups)
	if err != nil {
		return nil, err
	}
	targets := instances(nodes, targetNode)
	groups := make([]string, len(ports))
	for i, p := range ports {
		name := tgName(svc, p)
		tg, err := b.ensureTargetGroup(ctx, svc, p, sdk.ToString(lb.VpcId), owned[name])
		if err != nil {
			return nil, err
		}
		groups[i] = tg
		delete(owned, name)
		if err := b.syncTargets(ctx, tg, targets); err != nil {
			return nil, err
		}
	}
	if err := b.syncListeners(ctx, svc, lbARN, ports, groups); err != nil {
		return nil, err
	}
	// What is left of the Service's groups serves no port any more.
	for _, tg := range owned {
		if err := b.removeTargetGroup(ctx, svc, sdk.ToString(tg.TargetGroupArn)); err != nil {
			return nil, err
		}
	}
	if lb.State != nil && lb.State.Code != elbtypes.LoadBalancerStateEnumActive {
		return nil, api.NewRetryError(fmt.Sprintf("NLB %s is %s", lbName(svc), lb.State.Code), provisioningRetry)
	}
	return hostnameStatus(lb), nil
}

func (b *Backend) createLB(ctx context.Context, svc *v1.Service, scheme string) (*elbtypes.LoadBalancer, error) {
	subnets, err := b.subnets(ctx, svc, scheme)
	if err != nil {
		return nil, err
	}
	ipType := elbtypes.IpAddressTypeIpv4
	if slices.Contains(svc.Spec.IPFamilies, v1.IPv6Protocol) {
		ipType = elbtypes.IpAddressTypeDualstack
	}
	out, err := b.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{
		Name:          sdk.String(lbName(svc)),
		Type:          elbtypes.LoadBalancerTypeEnumNetwork,
		Scheme:        elbtypes.LoadBalancerSchemeEnum(scheme),
		Subnets:       subnets,
		IpAddressType: ipType,
		Tags:          elbTags(b.ownerTags(svc)),
	})
	if err != nil {
		return nil, fmt.Errorf("create NLB %s: %w", lbName(svc), err)
	}
	if len(out.LoadBalancers) == 0 {
		return nil, fmt.Errorf("create NLB %s: the response names no load balancer", lbName(svc))
	}
	b.log.Info("Created NLB", "service", config.Key(svc), "name", lbName(svc), "scheme", scheme, "subnets", subnets)
	return &out.LoadBalancers[0], nil
}

// ownedByName returns, by name, the groups among tgs that are tagged as
// the Service's, reading their tags in one call per 20 groups.
func (b *Backend) ownedByName(ctx context.Context, svc *v1.Service, tgs []elbtypes.TargetGroup) (map[string]*elbtypes.TargetGroup, error) {
	arns := make([]string, len(tgs))
	for i, tg := range tgs {
		arns[i] = sdk.ToString(tg.TargetGroupArn)
	}
	tags, err := b.elbTagsOfMany(ctx, arns)
	if err != nil {
		return nil, err
	}
	out := map[string]*elbtypes.TargetGroup{}
	for i := range tgs {
		if b.owns(tags[arns[i]], svc) {
			out[sdk.ToString(tgs[i].TargetGroupName)] = &tgs[i]
		}
	}
	return out, nil
}

// ensureTargetGroup returns the ARN of the group for one port, created if
// missing, with its health check brought in line. known is the group when
// it is already attached to the NLB (and known to be the Service's); nil
// means look it up by name, as one made by a call that failed before
// attaching it.
func (b *Backend) ensureTargetGroup(ctx context.Context, svc *v1.Service, p listenerPort, vpc string, known *elbtypes.TargetGroup) (string, error) {
	name := tgName(svc, p)
	hc := healthCheckFor(svc)
	if known == nil {
		var err error
		if known, err = b.findTargetGroup(ctx, svc, name); err != nil {
			return "", err
		}
	}
	if known != nil {
		arn := sdk.ToString(known.TargetGroupArn)
		if known.HealthCheckProtocol != hc.Protocol || sdk.ToString(known.HealthCheckPort) != hc.Port || sdk.ToString(known.HealthCheckPath) != hc.Path {
			if _, err := b.elb.ModifyTargetGroup(ctx, modifyHealthCheck(arn, hc)); err != nil {
				return "", fmt.Errorf("update the health check of target group %s: %w", name, err)
			}
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
		HealthCheckIntervalSeconds: sdk.Int32(10),
		HealthyThresholdCount:      sdk.Int32(2),
		UnhealthyThresholdCount:    sdk.Int32(2),
		Tags:                       elbTags(b.ownerTags(svc)),
	}
	if hc.Path != "" {
		in.HealthCheckPath = sdk.String(hc.Path)
	}
	created, err := b.elb.CreateTargetGroup(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create target group %s: %w", name, err)
	}
	if len(created.TargetGroups) == 0 {
		return "", fmt.Errorf("create target group %s: the response names no group", name)
	}
	return sdk.ToString(created.TargetGroups[0].TargetGroupArn), nil
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
	if !b.owns(tags[arn], svc) {
		return nil, &ConflictError{Kind: "target group", Name: name}
	}
	return &tg, nil
}

func modifyHealthCheck(arn string, hc healthCheck) *elb.ModifyTargetGroupInput {
	in := &elb.ModifyTargetGroupInput{
		TargetGroupArn:      sdk.String(arn),
		HealthCheckProtocol: hc.Protocol,
		HealthCheckPort:     sdk.String(hc.Port),
	}
	if hc.Path != "" {
		in.HealthCheckPath = sdk.String(hc.Path)
	}
	return in
}
