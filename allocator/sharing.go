package allocator

import (
	"net/netip"
	"slices"
)

// compatible returns nil if the requesting Service may hold addr from pool
// p alongside its current holders, or the reason it may not. what names
// the address in the message ("requested address", "address").
func (a *Allocator) compatible(pl *plan, addr netip.Addr, p *poolState, what string) *Error {
	h := a.addrs[addr]
	if h == nil {
		return nil
	}
	req := pl.req
	for _, o := range h.holders {
		if o.name == req.Service {
			continue
		}
		if req.SharingKey == "" || o.sharingKey != req.SharingKey {
			return errorf(ReasonRequestedAddressUnavailable,
				"%s %s is held by %s without a compatible sharing key", what, addr, holderName(o, req.Namespace))
		}
		if o.namespace != req.Namespace {
			refusing := p.Name
			if p.AllowCrossNamespaceSharing {
				refusing = a.poolOf(o, addr)
			}
			if !p.AllowCrossNamespaceSharing || !a.allowsCross(o, addr) {
				return errorf(ReasonSharingConflict,
					"sharing key %q: %s %s is held by a Service in another namespace, and pool %q does not allow cross-namespace sharing",
					req.SharingKey, what, addr, refusing)
			}
		}
		if pt, clash := portClash(req.Ports, o.ports); clash {
			return errorf(ReasonSharingConflict, "sharing key %q conflicts with %s on %s/%d",
				req.SharingKey, holderName(o, req.Namespace), pt.Protocol, pt.Port)
		}
		if (req.BackendKey != "" || o.backendKey != "") && req.BackendKey != o.backendKey {
			return errorf(ReasonSharingConflict,
				"sharing key %q: %s selects different backends; Services sharing an address with externalTrafficPolicy Local must select the same endpoints",
				req.SharingKey, holderName(o, req.Namespace))
		}
	}
	return nil
}

// holderName names a holder in a message to the Service of namespace ns:
// by name within its own namespace, and only as "a Service in another
// namespace" otherwise, so that a tenant never learns another tenant's
// Services from an error.
func holderName(o *service, ns string) string {
	if o.namespace == ns {
		return o.name
	}
	return "a Service in another namespace"
}

// poolOf returns the pool recorded for h's hold on addr.
func (a *Allocator) poolOf(h *service, addr netip.Addr) string {
	for _, as := range h.assigned {
		if as.Addr == addr {
			return as.Pool
		}
	}
	return ""
}

// portClash returns a port present in both lists.
func portClash(a, b []Port) (Port, bool) {
	for _, p := range a {
		if slices.Contains(b, p) {
			return p, true
		}
	}
	return Port{}, false
}

// commit records out as everything the plan's Service holds.
func (a *Allocator) commit(pl *plan, out []Assignment) {
	req, svc := pl.req, pl.svc
	if svc == nil {
		svc = &service{name: req.Service}
		a.services[req.Service] = svc
	}
	oldKey, old := svc.sharingKey, svc.assigned
	for _, as := range old {
		if !hasAddr(out, as.Addr) {
			a.unhold(svc, as.Addr)
		}
	}
	svc.namespace, svc.sharingKey, svc.backendKey = req.Namespace, req.SharingKey, req.BackendKey
	svc.ports = slices.Clone(req.Ports)
	for _, as := range out {
		if !hasAddr(old, as.Addr) {
			a.hold(svc, as.Addr)
		}
	}
	a.setPoolHolders(svc, out)
	svc.assigned = slices.Clone(out)
	for _, as := range old {
		a.reindex(as.Addr, oldKey, svc.sharingKey)
	}
	for _, as := range out {
		a.reindex(as.Addr, oldKey, svc.sharingKey)
	}
}

func hasAddr(as []Assignment, addr netip.Addr) bool {
	return slices.ContainsFunc(as, func(as Assignment) bool { return as.Addr == addr })
}
