package aws

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/api/v1alpha1"
)

// annPrefix starts every annotation of the upstream AWS cloud provider and
// of the AWS Load Balancer Controller.
const annPrefix = "service.beta.kubernetes.io/aws-load-balancer-"

// The upstream annotations Berth honours in nlb mode.
const (
	// AnnotationType is "nlb" (or absent) for Berth; "external" and
	// "nlb-ip" belong to the AWS Load Balancer Controller and Berth leaves
	// such Services alone.
	AnnotationType = annPrefix + "type"
	// AnnotationInternal makes the NLB internal unless it is "false".
	AnnotationInternal = annPrefix + "internal"
	// AnnotationScheme is "internal" or "internet-facing".
	AnnotationScheme = annPrefix + "scheme"
	// AnnotationSubnets lists subnet IDs or Name tags, comma separated.
	AnnotationSubnets = annPrefix + "subnets"
	// AnnotationAdditionalTags is "k1=v1,k2=v2", added to every resource.
	AnnotationAdditionalTags = annPrefix + "additional-resource-tags"
	// AnnotationTargetNodeLabels is "k1=v1,k2" (a label selector of equality
	// and existence terms): only matching nodes become targets.
	AnnotationTargetNodeLabels = annPrefix + "target-node-labels"
	// The health check annotations.
	AnnotationHCProtocol  = annPrefix + "healthcheck-protocol"
	AnnotationHCPort      = annPrefix + "healthcheck-port"
	AnnotationHCPath      = annPrefix + "healthcheck-path"
	AnnotationHCInterval  = annPrefix + "healthcheck-interval"
	AnnotationHCTimeout   = annPrefix + "healthcheck-timeout"
	AnnotationHCHealthy   = annPrefix + "healthcheck-healthy-threshold"
	AnnotationHCUnhealthy = annPrefix + "healthcheck-unhealthy-threshold"
)

// honoured lists the annotations read by parseRequest; any other
// annotation with annPrefix is reported as not supported.
var honoured = []string{
	AnnotationType, AnnotationInternal, AnnotationScheme, AnnotationSubnets, AnnotationAdditionalTags,
	AnnotationTargetNodeLabels, AnnotationHCProtocol, AnnotationHCPort, AnnotationHCPath, AnnotationHCInterval,
	AnnotationHCTimeout, AnnotationHCHealthy, AnnotationHCUnhealthy, AnnotationIPAddressType, AnnotationEIPAllocations,
	AnnotationPrivateIPv4, AnnotationCrossZone, AnnotationTargetGroupAttributes, AnnotationExtraSecurityGroups,
}

// implementedElsewhere marks a Service that another controller serves.
type implementedElsewhere struct{ value string }

func (e implementedElsewhere) Error() string {
	return fmt.Sprintf("%s=%q is served by the AWS Load Balancer Controller, not berth-ccm", AnnotationType, e.value)
}

// request is what a Service asks of its NLB, read from its annotations
// and checked against the operator's policy.
type request struct {
	Scheme string
	// Subnets are IDs or Name tags from the annotation; nil means the
	// configured or discovered subnets.
	Subnets []string
	// Tags are the additional resource tags.
	Tags map[string]string
	// HealthCheck overrides the default health check field by field.
	HealthCheck healthCheck
	// TargetNodes, when non-nil, selects the nodes that become targets.
	TargetNodes labels.Selector
	// DualStack is true for a Service with an IPv6 family: its NLB is
	// dualstack and its subnets need IPv6 CIDRs.
	DualStack bool
	// IPv6Targets is true for a Service whose primary family is IPv6
	// (IPv6-only, or dual-stack with IPv6 first): its target groups are
	// IPv6 groups of the nodes' IPv6 addresses. A Service's primary
	// family never changes, so neither does the kind of its groups.
	IPv6Targets bool
	// Unsupported lists the upstream annotations Berth does not implement,
	// sorted; the Service is served without them.
	Unsupported []string
	lbOptions
}

// parseRequest reads the Service's annotations. An error names the
// annotation a user must fix or the operator's rule it breaks; an
// implementedElsewhere error means the Service is not Berth's to serve.
func parseRequest(svc *v1.Service, nlb NLBConfig) (request, error) {
	a := svc.Annotations
	var r request
	switch t := strings.TrimSpace(a[AnnotationType]); t {
	case "", "nlb":
	case "external", "nlb-ip":
		return r, implementedElsewhere{t}
	default:
		return r, fmt.Errorf("annotation %s=%q: berth-ccm makes network load balancers only (\"nlb\")", AnnotationType, t)
	}
	scheme, err := requestedScheme(a, nlb.Scheme)
	if err != nil {
		return r, err
	}
	if !slices.Contains(nlb.AllowedSchemes, scheme) {
		return r, fmt.Errorf("the Service asks for an %s NLB; the cluster operator allows only %s (aws.nlb.allowedSchemes)",
			scheme, strings.Join(nlb.AllowedSchemes, ", "))
	}
	r.Scheme = scheme
	r.DualStack = slices.Contains(svc.Spec.IPFamilies, v1.IPv6Protocol)
	r.IPv6Targets = ipv6Targets(svc)
	if err := parseLBOptions(a, nlb, &r); err != nil {
		return r, err
	}
	if r.Subnets, err = requestedSubnets(a, nlb.AllowedSubnets); err != nil {
		return r, err
	}
	if r.Tags, err = parseTags(a[AnnotationAdditionalTags]); err != nil {
		return r, err
	}
	if r.HealthCheck, err = parseHealthCheck(a); err != nil {
		return r, err
	}
	if s := strings.TrimSpace(a[AnnotationTargetNodeLabels]); s != "" {
		sel, err := labels.Parse(s)
		if err != nil {
			return r, fmt.Errorf("annotation %s=%q: %w", AnnotationTargetNodeLabels, s, err)
		}
		r.TargetNodes = sel
	}
	for k := range a {
		if strings.HasPrefix(k, annPrefix) && !slices.Contains(honoured, k) {
			r.Unsupported = append(r.Unsupported, k)
		}
	}
	slices.Sort(r.Unsupported)
	return r, nil
}

// requestedScheme reads the upstream annotations (the internal one as the
// upstream provider does: any value but "false" means internal) and
// Berth's older alias, refusing contradictions.
func requestedScheme(a map[string]string, def string) (string, error) {
	var got []string
	if v, ok := a[AnnotationInternal]; ok && strings.TrimSpace(v) != "" {
		s := schemeInternal
		if strings.EqualFold(strings.TrimSpace(v), "false") {
			s = schemeInternetFacing
		}
		got = append(got, s)
	}
	for _, k := range []string{AnnotationScheme, v1alpha1.AnnotationAWSScheme} {
		if v, ok := a[k]; ok {
			if v = strings.TrimSpace(v); !validScheme(v) {
				return "", fmt.Errorf("annotation %s=%q: want %q or %q", k, v, schemeInternetFacing, schemeInternal)
			}
			got = append(got, v)
		}
	}
	if len(got) == 0 {
		return def, nil
	}
	if slices.ContainsFunc(got, func(s string) bool { return s != got[0] }) {
		return "", fmt.Errorf("annotations %s, %s and %s disagree on the scheme", AnnotationInternal, AnnotationScheme, v1alpha1.AnnotationAWSScheme)
	}
	return got[0], nil
}

// requestedSubnets reads the subnets annotation (or Berth's alias) and
// checks it against the operator's list; nil means none was given.
func requestedSubnets(a map[string]string, allowed []string) ([]string, error) {
	key := AnnotationSubnets
	v := strings.TrimSpace(a[key])
	if v == "" {
		key, v = v1alpha1.AnnotationAWSSubnets, strings.TrimSpace(a[v1alpha1.AnnotationAWSSubnets])
	}
	if v == "" {
		return nil, nil
	}
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if len(allowed) > 0 && !slices.Contains(allowed, s) {
			return nil, fmt.Errorf("annotation %s names subnet %q, which the cluster operator does not allow (aws.nlb.allowedSubnets)", key, s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// reservedTagPrefixes are tag keys a Service may not set: they prove
// ownership (Berth's, the cluster's) or are AWS's own.
var reservedTagPrefixes = []string{"berth.dev/", "kubernetes.io/", "aws:"}

// parseTags reads "k1=v1,k2=v2" within AWS's limits on tags.
func parseTags(s string) (map[string]string, error) {
	out := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case k == "" || len(k) > 128 || len(v) > 256:
			return nil, fmt.Errorf("annotation %s: tag %q: keys are 1 to 128 characters, values at most 256", AnnotationAdditionalTags, kv)
		case slices.ContainsFunc(reservedTagPrefixes, func(p string) bool { return strings.HasPrefix(strings.ToLower(k), p) }):
			return nil, fmt.Errorf("annotation %s: tag key %q is reserved (it would forge ownership)", AnnotationAdditionalTags, k)
		}
		out[k] = v
	}
	if len(out) > 40 {
		return nil, fmt.Errorf("annotation %s: %d tags; at most 40 besides Berth's own", AnnotationAdditionalTags, len(out))
	}
	return out, nil
}

// parseHealthCheck reads the health check annotations; zero fields were
// not given.
func parseHealthCheck(a map[string]string) (healthCheck, error) {
	var hc healthCheck
	if v := strings.ToUpper(strings.TrimSpace(a[AnnotationHCProtocol])); v != "" {
		if v != "TCP" && v != "HTTP" && v != "HTTPS" {
			return hc, fmt.Errorf("annotation %s=%q: want TCP, HTTP or HTTPS", AnnotationHCProtocol, v)
		}
		hc.Protocol = elbProtocol(v)
	}
	if v := strings.TrimSpace(a[AnnotationHCPort]); v != "" {
		if n, err := strconv.Atoi(v); v != "traffic-port" && (err != nil || n < 1 || n > 65535) {
			return hc, fmt.Errorf("annotation %s=%q: want traffic-port or a port number", AnnotationHCPort, v)
		}
		hc.Port = v
	}
	if v := strings.TrimSpace(a[AnnotationHCPath]); v != "" {
		if !strings.HasPrefix(v, "/") || len(v) > 1024 {
			return hc, fmt.Errorf("annotation %s=%q: want an absolute path of at most 1024 characters", AnnotationHCPath, v)
		}
		hc.Path = v
	}
	ints := []struct {
		key      string
		v        *int32
		min, max int
	}{
		{AnnotationHCInterval, &hc.Interval, 5, 300},
		{AnnotationHCTimeout, &hc.Timeout, 2, 120},
		{AnnotationHCHealthy, &hc.Healthy, 2, 10},
		{AnnotationHCUnhealthy, &hc.Unhealthy, 2, 10},
	}
	for _, f := range ints {
		v := strings.TrimSpace(a[f.key])
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < f.min || n > f.max {
			return hc, fmt.Errorf("annotation %s=%q: want a whole number from %d to %d", f.key, v, f.min, f.max)
		}
		*f.v = int32(n)
	}
	return hc, nil
}

// mergedTags returns the request's extra tags under the owner tags, which win.
func mergedTags(owner, extra map[string]string) map[string]string {
	out := maps.Clone(extra)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, owner)
	return out
}
