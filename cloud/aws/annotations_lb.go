package aws

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The upstream annotations about the load balancer's addresses and
// attributes.
const (
	// AnnotationIPAddressType is "ipv4" or "dualstack": the NLB's address
	// type, whatever the Service's IP families.
	AnnotationIPAddressType = annPrefix + "ip-address-type"
	// AnnotationEIPAllocations lists Elastic IP allocation IDs, one per
	// subnet, for an internet-facing NLB's addresses.
	AnnotationEIPAllocations = annPrefix + "eip-allocations"
	// AnnotationPrivateIPv4 lists private IPv4 addresses, one per subnet,
	// for an internal NLB's addresses.
	AnnotationPrivateIPv4 = annPrefix + "private-ipv4-addresses"
	// AnnotationCrossZone is "true" or "false": cross-zone load balancing.
	AnnotationCrossZone = annPrefix + "cross-zone-load-balancing-enabled"
	// AnnotationTargetGroupAttributes is "k1=v1,k2=v2": attributes of every
	// target group of the Service.
	AnnotationTargetGroupAttributes = annPrefix + "target-group-attributes"
	// AnnotationExtraSecurityGroups lists security group IDs the NLB gets
	// besides Berth's own.
	AnnotationExtraSecurityGroups = annPrefix + "extra-security-groups"
)

// nlbTargetGroupAttributes are the target group attributes AWS accepts for
// an NLB's instance target groups (ModifyTargetGroupAttributes), each with
// a check of its value.
var nlbTargetGroupAttributes = map[string]func(string) bool{
	"deregistration_delay.timeout_seconds":                                intIn(0, 3600),
	"deregistration_delay.connection_termination.enabled":                 isBool,
	"preserve_client_ip.enabled":                                          isBool,
	"proxy_protocol_v2.enabled":                                           isBool,
	"stickiness.enabled":                                                  isBool,
	"stickiness.type":                                                     func(v string) bool { return v == "source_ip" },
	"load_balancing.cross_zone.enabled":                                   func(v string) bool { return v == "true" || v == "false" || v == "use_load_balancer_configuration" },
	"target_health_state.unhealthy.connection_termination.enabled":        isBool,
	"target_health_state.unhealthy.draining_interval_seconds":             intIn(0, 360000),
	"target_group_health.dns_failover.minimum_healthy_targets.count":      func(v string) bool { return v == "off" || intIn(1, 1<<20)(v) },
	"target_group_health.dns_failover.minimum_healthy_targets.percentage": func(v string) bool { return v == "off" || intIn(1, 100)(v) },
}

func isBool(v string) bool { return v == "true" || v == "false" }

func intIn(lo, hi int) func(string) bool {
	return func(v string) bool {
		n, err := strconv.Atoi(v)
		return err == nil && n >= lo && n <= hi
	}
}

// lbOptions are what a Service asks of its NLB's addresses and attributes.
type lbOptions struct {
	// EIPAllocations and PrivateIPv4 are per subnet, in the subnets'
	// sorted order; nil when not asked for.
	EIPAllocations []string
	PrivateIPv4    []string
	// CrossZone is nil when not asked for.
	CrossZone *bool
	// TargetGroupAttributes are set on every target group of the Service.
	TargetGroupAttributes map[string]string
	// ExtraSecurityGroups are attached to the NLB besides Berth's group,
	// sorted.
	ExtraSecurityGroups []string
}

// parseLBOptions reads the address and attribute annotations into r (whose
// Scheme and DualStack are already set), within the operator's policy.
func parseLBOptions(a map[string]string, nlb NLBConfig, r *request) error {
	switch v := strings.TrimSpace(a[AnnotationIPAddressType]); v {
	case "":
	case "ipv4", "dualstack":
		r.DualStack = v == "dualstack"
	default:
		return fmt.Errorf("annotation %s=%q: want ipv4 or dualstack", AnnotationIPAddressType, v)
	}
	if v := strings.TrimSpace(a[AnnotationEIPAllocations]); v != "" {
		if r.Scheme != schemeInternetFacing {
			return fmt.Errorf("annotation %s: Elastic IPs need an internet-facing NLB", AnnotationEIPAllocations)
		}
		for _, id := range splitList(v) {
			if !strings.HasPrefix(id, "eipalloc-") {
				return fmt.Errorf("annotation %s: %q is not an allocation ID (eipalloc-…)", AnnotationEIPAllocations, id)
			}
			if len(nlb.AllowedEIPAllocations) > 0 && !slices.Contains(nlb.AllowedEIPAllocations, id) {
				return fmt.Errorf("annotation %s names %s, which the cluster operator does not allow (aws.nlb.allowedEIPAllocations)",
					AnnotationEIPAllocations, id)
			}
			r.EIPAllocations = append(r.EIPAllocations, id)
		}
	}
	if v := strings.TrimSpace(a[AnnotationPrivateIPv4]); v != "" {
		if r.Scheme != schemeInternal {
			return fmt.Errorf("annotation %s: private addresses need an internal NLB", AnnotationPrivateIPv4)
		}
		for _, s := range splitList(v) {
			ip, err := netip.ParseAddr(s)
			if err != nil || !ip.Is4() {
				return fmt.Errorf("annotation %s: %q is not an IPv4 address", AnnotationPrivateIPv4, s)
			}
			r.PrivateIPv4 = append(r.PrivateIPv4, ip.String())
		}
	}
	if v := strings.TrimSpace(a[AnnotationCrossZone]); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("annotation %s=%q: want true or false", AnnotationCrossZone, v)
		}
		r.CrossZone = &b
	}
	for _, id := range splitList(a[AnnotationExtraSecurityGroups]) {
		if !strings.HasPrefix(id, "sg-") {
			return fmt.Errorf("annotation %s: %q is not a security group ID (sg-…)", AnnotationExtraSecurityGroups, id)
		}
		if len(nlb.AllowedSecurityGroups) > 0 && !slices.Contains(nlb.AllowedSecurityGroups, id) {
			return fmt.Errorf("annotation %s names %s, which the cluster operator does not allow (aws.nlb.allowedSecurityGroups)",
				AnnotationExtraSecurityGroups, id)
		}
		r.ExtraSecurityGroups = append(r.ExtraSecurityGroups, id)
	}
	slices.Sort(r.ExtraSecurityGroups)
	r.ExtraSecurityGroups = slices.Compact(r.ExtraSecurityGroups)
	for _, kv := range splitList(a[AnnotationTargetGroupAttributes]) {
		k, v, _ := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		check, ok := nlbTargetGroupAttributes[k]
		switch {
		case !ok:
			return fmt.Errorf("annotation %s: %q is not a target group attribute of a network load balancer", AnnotationTargetGroupAttributes, k)
		case !check(v):
			return fmt.Errorf("annotation %s: %s=%q is not a valid value", AnnotationTargetGroupAttributes, k, v)
		}
		if r.TargetGroupAttributes == nil {
			r.TargetGroupAttributes = map[string]string{}
		}
		r.TargetGroupAttributes[k] = v
	}
	return nil
}

// splitList splits a comma-separated annotation value, dropping blanks.
func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
