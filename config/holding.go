package config

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/allocator"
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
	// Every pool, whatever autoAssign or selectors say: the address is
	// given already, and only its being taken matters.
	req, extra = c.statusRequest(svc, identity, c.Names())
	req.Requested = req.Current
	return req, extra
}

// KeepRequest is the request that keeps what a Service's status shows
// while its own request cannot be read (an InvalidRequest): each address of
// its status, at most one per family, that lies in a pool the Service may
// use by that pool's serviceAllocation, and nothing new (KeepOnly). It
// rebuilds after a restart what the controller promised to keep until the
// Service is fixed. A request with no Current address keeps nothing.
func (c *Config) KeepRequest(svc *corev1.Service, nsLabels labels.Set) allocator.Request {
	var allowed []string
	for _, n := range c.names {
		p := c.pools[n]
		if ok, _ := p.Allows(svc.Namespace, svc.Labels, nsLabels); ok || (len(p.Problems) > 0 && p.containsAny(CurrentAddresses(svc))) {
			allowed = append(allowed, n)
		}
	}
	req, _ := c.statusRequest(svc, Key(svc), allowed)
	req.KeepOnly = true
	return req
}

// statusRequest is a request under identity for the addresses of svc's
// status that lie in one of pools, at most one per family (the allocator
// holds one per family; extra lists the others), with the Service's
// sharing attributes so that sharing stays compatible.
func (c *Config) statusRequest(svc *corev1.Service, identity string, pools []string) (req allocator.Request, extra []netip.Addr) {
	req = allocator.Request{
		Service:       identity,
		Namespace:     svc.Namespace,
		SharingKey:    holdingSharingKey(svc),
		Pools:         pools,
		ExplicitPools: true,
		Ports:         ports(svc),
		BackendKey:    backendKey(svc),
	}
	for _, a := range CurrentAddresses(svc) {
		if !slices.ContainsFunc(pools, func(n string) bool { return c.pools[n].contains(a) }) {
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
		req.Current = append(req.Current, a)
	}
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
