package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
)

// RequestError says why a Service cannot be served as it is written. Reason
// is one of the v1alpha1 Reason constants and goes into the Service's
// AddressAllocated condition; the message is for the user.
type RequestError struct {
	Reason string
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

func requestErr(reason, format string, args ...any) *RequestError {
	return &RequestError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Key returns the identity the allocator knows a Service by.
func Key(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

// Request turns a Service into an allocator request. nsLabels are the labels
// of the Service's namespace. The Service's current ingress addresses are
// passed on as Current so that the allocator keeps them when still valid.
func (c *Config) Request(svc *corev1.Service, nsLabels labels.Set) (allocator.Request, error) {
	req := allocator.Request{
		Service:   Key(svc),
		Namespace: svc.Namespace,
		Current:   CurrentAddresses(svc),
	}
	var err error
	if req.SharingKey, err = sharingKey(svc); err != nil {
		return req, err
	}
	if req.Families, req.RequireAll, err = families(svc); err != nil {
		return req, err
	}
	if req.Requested, err = requested(svc, req.Families); err != nil {
		return req, err
	}
	req.Ports = ports(svc)
	req.BackendKey = backendKey(svc)
	req.Pools, req.ExplicitPools, err = c.poolsFor(svc, nsLabels, req.Current)
	if err != nil {
		return req, err
	}
	return req, c.checkRequested(svc, nsLabels, req)
}

// backendKey identifies a Service's backends under externalTrafficPolicy
// Local, "" otherwise. Services sharing an address under Local must have
// the same backends, or one of them would be announced from nodes without
// its endpoints. The namespace is part of the key because equal selectors
// in two namespaces (cross-namespace sharing) select different pods.
func backendKey(svc *corev1.Service) string {
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		return ""
	}
	if len(svc.Spec.Selector) > 0 {
		return "selector:" + svc.Namespace + "/" + labels.Set(svc.Spec.Selector).String()
	}
	return "service:" + Key(svc)
}

// CurrentAddresses returns the IP addresses in the Service's load-balancer
// status, in order. Hostnames are ignored, and so are addresses with a
// zone ("fe80::1%eth0"), which no load balancer hands out and the API
// server does not take, but which would otherwise be announced without
// their zone.
func CurrentAddresses(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil && a.Zone() == "" {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func families(svc *corev1.Service) ([]allocator.Family, bool, error) {
	var fams []allocator.Family
	given := len(svc.Spec.IPFamilies)
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			fams = append(fams, allocator.IPv4)
		case corev1.IPv6Protocol:
			fams = append(fams, allocator.IPv6)
		}
	}
	if len(fams) == 0 {
		// The API server fills ipFamilies for every Service with a cluster
		// IP; one without them can only be served in the default family.
		fams = []allocator.Family{allocator.IPv4}
	}
	policy := corev1.IPFamilyPolicySingleStack
	if svc.Spec.IPFamilyPolicy != nil {
		policy = *svc.Spec.IPFamilyPolicy
	}
	switch policy {
	case corev1.IPFamilyPolicyRequireDualStack:
		if len(fams) < 2 {
			return nil, false, requestErr(v1alpha1.ReasonInvalidRequest, "ipFamilyPolicy RequireDualStack needs two ipFamilies, the Service has %d", given)
		}
		return fams, true, nil
	case corev1.IPFamilyPolicyPreferDualStack:
		return fams, false, nil
	default:
		return fams[:1], false, nil
	}
}

func requested(svc *corev1.Service, fams []allocator.Family) ([]netip.Addr, error) {
	ann, err := readAliased(svc, v1alpha1.AnnotationAddresses, AddressAliases, normList)
	if err != nil {
		return nil, err
	}
	var entries []string
	if ann.present {
		for _, e := range strings.Split(ann.value, ",") {
			if e = strings.TrimSpace(e); e != "" {
				entries = append(entries, e)
			}
		}
	}
	if lbip := strings.TrimSpace(svc.Spec.LoadBalancerIP); lbip != "" {
		if len(entries) > 0 && !slices.ContainsFunc(entries, func(e string) bool { return sameAddr(e, lbip) }) {
			return nil, requestErr(v1alpha1.ReasonInvalidRequest, "spec.loadBalancerIP %s disagrees with annotation %s=%q; set only one", lbip, ann.name, ann.value)
		}
		if len(entries) == 0 {
			entries = []string{lbip}
		}
	}
	var out []netip.Addr
	seen := map[allocator.Family]netip.Addr{}
	for _, e := range entries {
		a, err := netip.ParseAddr(e)
		if err != nil || a.Zone() != "" || a.Is4In6() {
			return nil, requestErr(v1alpha1.ReasonInvalidRequest, "requested address %q is not a plain IPv4 or IPv6 address", e)
		}
		f := allocator.IPv6
		if a.Is4() {
			f = allocator.IPv4
		}
		if prev, dup := seen[f]; dup {
			return nil, requestErr(v1alpha1.ReasonInvalidRequest, "at most one address per IP family may be requested, got %s and %s", prev, a)
		}
		if !slices.Contains(fams, f) {
			return nil, requestErr(v1alpha1.ReasonInvalidRequest, "requested address %s is IPv%d, but the Service's ipFamilies/ipFamilyPolicy give it only %s", a, f, familyList(fams))
		}
		seen[f] = a
		out = append(out, a)
	}
	return out, nil
}

// sameAddr reports whether two entries name the same address, so that
// "2001:DB8::1" agrees with "2001:db8::1". Unparsable entries agree only
// when they are equal text; the parser rejects them later anyway.
func sameAddr(a, b string) bool {
	if a == b {
		return true
	}
	x, errA := netip.ParseAddr(a)
	y, errB := netip.ParseAddr(b)
	return errA == nil && errB == nil && x == y
}

func familyList(fams []allocator.Family) string {
	parts := make([]string, len(fams))
	for i, f := range fams {
		parts[i] = fmt.Sprintf("IPv%d", f)
	}
	return strings.Join(parts, " and ")
}

// poolsFor returns the pools the Service may draw from and whether the user
// named them. Terminating pools are offered only to a Service that already
// holds one of their addresses, so that deleting a pool never moves one.
func (c *Config) poolsFor(svc *corev1.Service, nsLabels labels.Set, current []netip.Addr) ([]string, bool, error) {
	ann, err := readAliased(svc, v1alpha1.AnnotationPool, PoolAliases, normList)
	if err != nil {
		return nil, true, err
	}
	explicit := ann.present
	var candidates []string
	if explicit {
		for _, n := range strings.Split(ann.value, ",") {
			if n = strings.TrimSpace(n); n != "" {
				candidates = append(candidates, n)
			}
		}
		if len(candidates) == 0 {
			return nil, true, requestErr(v1alpha1.ReasonInvalidRequest, "annotation %s is empty", ann.name)
		}
	} else {
		candidates = c.names
	}
	var out, why []string
	for _, n := range candidates {
		if reason := c.refusal(n, svc, nsLabels, current); reason != "" {
			why = append(why, reason)
			continue
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		if len(why) == 0 {
			return nil, explicit, requestErr(v1alpha1.ReasonNoMatchingPool, "no BerthIPPool exists; create one")
		}
		return nil, explicit, requestErr(v1alpha1.ReasonNoMatchingPool, "no BerthIPPool may serve this Service: %s", strings.Join(why, "; "))
	}
	return out, explicit, nil
}

// refusal says why the named pool may not serve the Service, or "" if it
// may.
func (c *Config) refusal(n string, svc *corev1.Service, nsLabels labels.Set, current []netip.Addr) string {
	p, ok := c.pools[n]
	switch {
	case !ok:
		return fmt.Sprintf("pool %q does not exist", n)
	case len(p.Problems) > 0 && p.containsAny(current):
		// Its selectors may be what is broken, so they cannot be asked;
		// the Service keeps what it was given and the allocator gives
		// nothing new from a pool with problems.
		return ""
	case len(p.Problems) > 0:
		// Its problems may quote its selectors (another tenant's
		// allow-list); the pool's Ready condition has them for the operator.
		return fmt.Sprintf("pool %q is invalid (its Ready condition says why) and hands out no addresses", n)
	case p.Terminating && !p.containsAny(current):
		return fmt.Sprintf("pool %q is being deleted", n)
	}
	_, reason := p.Allows(svc.Namespace, svc.Labels, nsLabels)
	return reason
}

// checkRequested explains a requested address that none of the allowed
// pools contains, naming the pool it belongs to and the rule that keeps the
// Service out of it. Addresses inside an allowed pool are left to the
// allocator, which knows whether they are free.
func (c *Config) checkRequested(svc *corev1.Service, nsLabels labels.Set, req allocator.Request) error {
	for _, a := range req.Requested {
		if why, used := c.cluster.Forbidden(a); used {
			return requestErr(v1alpha1.ReasonRequestedAddressUnavailable, "requested address %s %s, which Berth never hands out; ask for another address", a, why)
		}
		if slices.ContainsFunc(req.Pools, func(n string) bool { return c.pools[n].contains(a) }) {
			continue
		}
		for _, n := range c.names {
			p := c.pools[n]
			if !p.contains(a) {
				continue
			}
			// Checked like poolsFor does, so that an invalid or deleted
			// pool is named as such rather than by a selector it failed.
			if reason := c.refusal(n, svc, nsLabels, req.Current); reason != "" {
				return requestErr(v1alpha1.ReasonRequestedAddressUnavailable, "requested address %s belongs to pool %q, which this Service may not use: %s", a, n, reason)
			}
			return requestErr(v1alpha1.ReasonRequestedAddressUnavailable, "requested address %s belongs to pool %q, which is not among the pools this Service may use (%s)", a, n, strings.Join(req.Pools, ", "))
		}
		return requestErr(v1alpha1.ReasonRequestedAddressUnavailable, "requested address %s is in no BerthIPPool", a)
	}
	return nil
}

func (p *Pool) contains(a netip.Addr) bool {
	for _, r := range p.Alloc.Ranges {
		if r.First.BitLen() == a.BitLen() && r.First.Compare(a) <= 0 && r.Last.Compare(a) >= 0 {
			return true
		}
	}
	return false
}

func (p *Pool) containsAny(addrs []netip.Addr) bool {
	return slices.ContainsFunc(addrs, p.contains)
}
