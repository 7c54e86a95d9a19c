package aws

import (
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzParseRequest feeds arbitrary annotation values to the parser of a
// Service's AWS annotations: it must never panic, and what it accepts
// must stay within the operator's policy and never forge ownership tags.
func FuzzParseRequest(f *testing.F) {
	f.Add("true", "", "nlb", "subnet-a,public-b", "team=web,a=b", "pool=edge", "HTTP", "8080", "/healthz", "10", "eipalloc-1", "sg-1", "stickiness.enabled=true")
	f.Add("false", "internal", "", "", "berth.dev/service-uid=x", "!a,b in (c)", "tcp", "traffic-port", "", "x", "eipalloc-2,x", "sg-2,sg-1", "k=v")
	f.Add("0.0.0.0/0", "internet-facing", "external", " , ", "=,k=", "a=b=c", "HTTPS", "0", "no-slash", "300", ",", "", "deregistration_delay.timeout_seconds=99999")
	f.Fuzz(func(t *testing.T, internal, scheme, typ, subnets, tags, nodeLabels, hcProto, hcPort, hcPath, interval, eips, sgs, tgAttrs string) {
		svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			AnnotationInternal: internal, AnnotationScheme: scheme, AnnotationType: typ, AnnotationSubnets: subnets,
			AnnotationAdditionalTags: tags, AnnotationTargetNodeLabels: nodeLabels, AnnotationHCProtocol: hcProto,
			AnnotationHCPort: hcPort, AnnotationHCPath: hcPath, AnnotationHCInterval: interval,
			AnnotationEIPAllocations: eips, AnnotationExtraSecurityGroups: sgs, AnnotationTargetGroupAttributes: tgAttrs,
		}}}
		for _, policy := range []NLBConfig{
			{Scheme: schemeInternetFacing, AllowedSchemes: []string{schemeInternal, schemeInternetFacing}},
			{Scheme: schemeInternal, AllowedSchemes: []string{schemeInternal}, AllowedSubnets: []string{"subnet-a"},
				AllowedEIPAllocations: []string{"eipalloc-1"}, AllowedSecurityGroups: []string{"sg-1"}},
		} {
			r, err := parseRequest(svc, policy)
			if err != nil {
				continue
			}
			if !slices.Contains(policy.AllowedSchemes, r.Scheme) {
				t.Fatalf("scheme %q accepted outside %v", r.Scheme, policy.AllowedSchemes)
			}
			for _, s := range r.Subnets {
				if len(policy.AllowedSubnets) > 0 && !slices.Contains(policy.AllowedSubnets, s) {
					t.Fatalf("subnet %q accepted outside %v", s, policy.AllowedSubnets)
				}
			}
			for k := range r.Tags {
				if strings.HasPrefix(strings.ToLower(k), "berth.dev/") || strings.HasPrefix(strings.ToLower(k), "kubernetes.io/") {
					t.Fatalf("reserved tag %q accepted", k)
				}
			}
			if r.HealthCheck.Interval != 0 && (r.HealthCheck.Interval < 5 || r.HealthCheck.Interval > 300) {
				t.Fatalf("interval %d accepted", r.HealthCheck.Interval)
			}
			for _, id := range r.EIPAllocations {
				if len(policy.AllowedEIPAllocations) > 0 && !slices.Contains(policy.AllowedEIPAllocations, id) {
					t.Fatalf("Elastic IP %q accepted outside %v", id, policy.AllowedEIPAllocations)
				}
			}
			for _, id := range r.ExtraSecurityGroups {
				if len(policy.AllowedSecurityGroups) > 0 && !slices.Contains(policy.AllowedSecurityGroups, id) {
					t.Fatalf("security group %q accepted outside %v", id, policy.AllowedSecurityGroups)
				}
			}
			for k, v := range r.TargetGroupAttributes {
				if check, ok := nlbTargetGroupAttributes[k]; !ok || !check(v) {
					t.Fatalf("target group attribute %s=%q accepted", k, v)
				}
			}
		}
	})
}
