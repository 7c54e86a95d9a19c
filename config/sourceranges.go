package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// SourceRanges returns whether svc restricts its clients, and to which
// ranges: spec.loadBalancerSourceRanges, else the
// service.beta.kubernetes.io/load-balancer-source-ranges annotation (comma
// separated). It is the one reading of them for forwarding (the speaker)
// and for cloud load balancers (berth-ccm). An error comes with no ranges
// and restricted true: the caller must then refuse every client, never
// admit all of them.
func SourceRanges(svc *corev1.Service) (restricted bool, ranges []netip.Prefix, err error) {
	specs := svc.Spec.LoadBalancerSourceRanges
	if len(specs) == 0 {
		if v := strings.TrimSpace(svc.Annotations[corev1.AnnotationLoadBalancerSourceRangesKey]); v != "" {
			specs = strings.Split(v, ",")
		}
	}
	ranges, err = ParseSourceRanges(specs)
	if err == nil && len(ranges) == 0 {
		return false, nil, nil
	}
	return true, ranges, err
}

// ParseSourceRanges parses source range entries: CIDRs, surrounding spaces
// allowed, empty entries skipped, host bits ignored. An entry that does not
// parse (a bare address included) is an error, and then no range is
// returned.
func ParseSourceRanges(specs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(specs))
	var errs []error
	for _, s := range specs {
		t := strings.TrimSpace(s)
		if t == "" {
			continue
		}
		p, err := netip.ParsePrefix(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("source range %q: %w", s, err))
			continue
		}
		out = append(out, p.Masked())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
