package config

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
)

// HoldingRequest is the allocator request that records the addresses
// another implementation gave svc, under identity, so they are never handed
// out again: every address in its status that lies inside a pool, at most
// one per family (the allocator holds one per family), with its sharing
// key and ports so that sharing stays compatible. Addresses outside every
// pool are none of Berth's business. The addresses are passed as Current
// too, so that one in a pool being deleted or gone invalid is still held
// rather than refused like a new request. extra lists the addresses left
// out because their family already had one. A request with no Requested
// address holds nothing.
func (c *Config) HoldingRequest(svc *corev1.Service, identity string) (req allocator.Request, extra []netip.Addr) {
	req = allocator.Request{
		Service:    identity,
		Namespace:  svc.Namespace,
		SharingKey: strings.TrimSpace(svc.Annotations[v1alpha1.AnnotationSharingKey]),
		Pools:      c.Names(),
		// Every pool, whatever autoAssign or selectors say: the address is
		// given already, and only its being taken matters.
		ExplicitPools: true,
		Ports:         ports(svc),
	}
	for _, a := range CurrentAddresses(svc) {
		if _, in := c.PoolFor(a); !in {
			continue
		}
		f := allocator.IPv6
		if a.Is4() {
			f = allocator.IPv4
		}
		if slices.Contains(req.Families, f) {
			extra = append(extra, a)
			continue
		}
		req.Families = append(req.Families, f)
		req.Requested = append(req.Requested, a)
	}
	req.Current = req.Requested
	return req, extra
}

// ports lists the Service's ports for the allocator's sharing rules.
func ports(svc *corev1.Service) []allocator.Port {
	var out []allocator.Port
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		out = append(out, allocator.Port{Protocol: proto, Port: p.Port})
	}
	return out
}
