package allocator

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// Port is one service port. Services sharing an address must not overlap
// in (Protocol, Port), or traffic could not be told apart.
type Port struct {
	Protocol string
	Port     int32
}

// Request describes what one Service wants. The caller (the controller)
// has already applied namespace and selector rules to Pools and validated
// user input; the allocator still rejects malformed requests with
// ReasonInvalidRequest rather than guessing.
type Request struct {
	// Service is the unique identity, "namespace/name".
	Service string
	// Namespace restricts sharing to the same namespace unless the pool
	// allows cross-namespace sharing.
	Namespace string
	// Families are the wanted families in order of preference (1 or 2
	// entries); duplicates are ignored.
	Families []Family
	// RequireAll asks for all families or nothing (RequireDualStack);
	// otherwise as many as possible (PreferDualStack, SingleStack).
	RequireAll bool
	// Pools the Service may use, in any order; unknown names are ignored.
	Pools []string
	// ExplicitPools is true when the user named the pools, which makes
	// autoAssign=false pools usable.
	ExplicitPools bool
	// Requested are explicit addresses wanted, at most one per family.
	Requested []netip.Addr
	// Current are the addresses the Service holds according to its status;
	// valid ones are kept, which is how state is rebuilt after a restart.
	Current []netip.Addr
	// SharingKey lets Services share addresses; "" means no sharing.
	SharingKey string
	// Ports are checked for overlap against Services sharing an address.
	Ports []Port
	// BackendKey identifies the backends when externalTrafficPolicy is
	// Local; sharing Services must have equal keys when either is set,
	// since a shared address can only be announced from one set of nodes.
	BackendKey string
	// KeepOnly restricts the request to addresses the Service holds
	// already (Current, or the allocator's record): nothing is joined or
	// handed out fresh, and a requested address is given only if held.
	// A replay uses it to record every valid address before any Service
	// may be given a new one, so that no valid address can be taken.
	KeepOnly bool
}

// Missing is a family a Service wanted but did not get, and why.
type Missing struct {
	Family Family
	Err    *Error
}

// plan is a request checked and resolved against the current pools.
type plan struct {
	req       *Request
	svc       *service // nil for a Service the allocator does not know
	fams      []Family
	requested []netip.Addr // at most one per family
	allowed   []*poolState // existing pools of req.Pools, by priority then name
	usable    []*poolState // allowed pools that may hand out addresses unasked
}

// Assign returns the addresses for the Service, one per family it gets, in
// the order of req.Families, and records them, releasing whatever else the
// Service held. Calling it again with the same request returns the same
// result and changes nothing.
//
// For each family it takes, in this order: the requested address; a valid
// address from Current or from the allocator's own record (valid: allocatable
// in an allowed pool and not held incompatibly; a valid address is never
// moved); an address of the same sharing key it can join, in a usable pool;
// the lowest free address of the first usable pool by priority then name.
// Usable pools are the allowed ones with autoAssign, or all allowed ones when
// ExplicitPools is set.
//
// Cost: O(P·log n) per family for P allowed pools and n held addresses, plus
// O(K·P) to find an address to join among the K addresses of the sharing
// key; never proportional to pool size.
//
// On error nothing changes: the Service keeps what it held, so a failed
// re-evaluation never costs a working address. With several families and
// RequireAll false, a partial result is returned with a nil error; use
// AssignPartial to learn what is missing.
func (a *Allocator) Assign(req Request) ([]Assignment, error) {
	got, _, err := a.AssignPartial(req)
	return got, err
}

// AssignPartial is Assign that also reports, for a partial result, each
// family that could not be served and why, in the order of req.Families.
// missing is empty whenever err is not nil.
func (a *Allocator) AssignPartial(req Request) (got []Assignment, missing []Missing, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lazyInit()
	pl, perr := a.plan(&req)
	if perr != nil {
		return nil, nil, perr
	}
	var out []Assignment
	var errs []*Error
	for _, f := range pl.fams {
		as, err := a.choose(pl, f)
		if err != nil {
			if req.RequireAll {
				return nil, nil, err
			}
			errs = append(errs, err)
			missing = append(missing, Missing{Family: f, Err: err})
			continue
		}
		out = append(out, as)
	}
	if len(out) == 0 {
		return nil, nil, joinErrors(errs)
	}
	a.commit(pl, out)
	return slices.Clone(out), missing, nil
}

func (a *Allocator) plan(req *Request) (*plan, *Error) {
	if req.Service == "" {
		return nil, errorf(ReasonInvalidRequest, "request has no service name")
	}
	pl := &plan{req: req, svc: a.services[req.Service]}
	for _, f := range req.Families {
		if f != IPv4 && f != IPv6 {
			return nil, errorf(ReasonInvalidRequest, "unknown IP family %d", int(f))
		}
		if !slices.Contains(pl.fams, f) {
			pl.fams = append(pl.fams, f)
		}
	}
	if len(pl.fams) == 0 {
		return nil, errorf(ReasonInvalidRequest, "no IP family requested")
	}
	for _, r := range req.Requested {
		if !r.IsValid() || r.Zone() != "" {
			return nil, errorf(ReasonInvalidRequest, "requested address %q is not a valid unzoned IP address", r)
		}
		f := familyOf(r)
		if !slices.Contains(pl.fams, f) {
			return nil, errorf(ReasonInvalidRequest, "requested address %s is %v, but the Service asks only for %v", r, f, pl.fams)
		}
		if prev, ok := pl.requestedFor(f); ok && prev != r {
			return nil, errorf(ReasonInvalidRequest, "requested addresses %s and %s are both %v; at most one per family", prev, r, f)
		} else if !ok {
			pl.requested = append(pl.requested, r)
		}
	}
	for _, name := range req.Pools {
		if p := a.pools[name]; p != nil && !slices.Contains(pl.allowed, p) {
			pl.allowed = append(pl.allowed, p)
		}
	}
	slices.SortFunc(pl.allowed, func(p, q *poolState) int {
		if c := cmp.Compare(p.Priority, q.Priority); c != 0 {
			return c
		}
		return strings.Compare(p.Name, q.Name)
	})
	for _, p := range pl.allowed {
		if (p.AutoAssign || req.ExplicitPools) && !p.Draining {
			pl.usable = append(pl.usable, p)
		}
	}
	return pl, nil
}

// holds reports whether the Service has addr now, in its status or in the
// allocator's record.
func (pl *plan) holds(addr netip.Addr) bool {
	if slices.Contains(pl.req.Current, addr) {
		return true
	}
	return pl.svc != nil && slices.ContainsFunc(pl.svc.assigned, func(as Assignment) bool { return as.Addr == addr })
}

func (pl *plan) requestedFor(f Family) (netip.Addr, bool) {
	for _, r := range pl.requested {
		if familyOf(r) == f {
			return r, true
		}
	}
	return netip.Addr{}, false
}

func (a *Allocator) choose(pl *plan, f Family) (Assignment, *Error) {
	if r, ok := pl.requestedFor(f); ok {
		p := a.poolFor(pl, r)
		if p == nil {
			return Assignment{}, a.unavailable(pl, r)
		}
		if pl.req.KeepOnly && !pl.holds(r) {
			return Assignment{}, errorf(ReasonRequestedAddressUnavailable, "%s is not held by this Service yet", r)
		}
		if p.Draining && !pl.holds(r) {
			return Assignment{}, errorf(ReasonRequestedAddressUnavailable,
				"%s belongs to pool %q, which is draining (being deleted or invalid) and hands out no new addresses", r, p.Name)
		}
		if err := a.compatible(pl, r, p, "requested address"); err != nil {
			return Assignment{}, err
		}
		return Assignment{Addr: r, Pool: p.Name}, nil
	}
	if as, ok := a.keep(pl, f); ok {
		return as, nil
	}
	if pl.req.KeepOnly {
		return Assignment{}, errorf(ReasonPoolExhausted, "no %v address of this Service is still valid", f)
	}
	if as, ok := a.join(pl, f); ok {
		return as, nil
	}
	return a.fresh(pl, f)
}

// poolFor returns the allowed pool to record for addr: the one already
// recorded for this Service if it still allows addr (so keeping an address
// never changes its pool), else the first allowed pool in which addr is
// allocatable. nil if there is none.
func (a *Allocator) poolFor(pl *plan, addr netip.Addr) *poolState {
	x, f := u128From(addr), familyOf(addr)
	if pl.svc != nil {
		for _, as := range pl.svc.assigned {
			if p := a.pools[as.Pool]; as.Addr == addr && p != nil &&
				slices.Contains(pl.allowed, p) && p.fam(f).allocatable(x) {
				return p
			}
		}
	}
	for _, p := range pl.allowed {
		if p.fam(f).allocatable(x) {
			return p
		}
	}
	return nil
}

// keep finds a still-valid address of family f among the Service's status
// addresses, then among those the allocator recorded for it (which may be
// ahead of a status the caller has not written yet).
func (a *Allocator) keep(pl *plan, f Family) (Assignment, bool) {
	for _, c := range pl.req.Current {
		if as, ok := a.keepable(pl, f, c); ok {
			return as, true
		}
	}
	if pl.svc != nil {
		for _, held := range pl.svc.assigned {
			if as, ok := a.keepable(pl, f, held.Addr); ok {
				return as, true
			}
		}
	}
	return Assignment{}, false
}

func (a *Allocator) keepable(pl *plan, f Family, c netip.Addr) (Assignment, bool) {
	if !c.IsValid() || c.Zone() != "" || familyOf(c) != f {
		return Assignment{}, false
	}
	p := a.poolFor(pl, c)
	if p == nil || a.compatible(pl, c, p, "address") != nil {
		return Assignment{}, false
	}
	return Assignment{Addr: c, Pool: p.Name}, true
}

// join finds an address of family f held under the request's sharing key
// that the Service may share, preferring pools by priority, then addresses
// in order.
func (a *Allocator) join(pl *plan, f Family) (Assignment, bool) {
	if pl.req.SharingKey == "" {
		return Assignment{}, false
	}
	var cands []netip.Addr
	for c := range a.byKey[pl.req.SharingKey] {
		if familyOf(c) == f {
			cands = append(cands, c)
		}
	}
	slices.SortFunc(cands, netip.Addr.Compare)
	for _, p := range pl.usable {
		fp := p.fam(f)
		for _, c := range cands {
			if fp.allocatable(u128From(c)) && a.compatible(pl, c, p, "address") == nil {
				return Assignment{Addr: c, Pool: p.Name}, true
			}
		}
	}
	return Assignment{}, false
}

// fresh hands out the lowest free address of the first usable pool that has
// one, or explains why none can.
func (a *Allocator) fresh(pl *plan, f Family) (Assignment, *Error) {
	if len(pl.allowed) == 0 {
		if len(pl.req.Pools) == 0 {
			return Assignment{}, errorf(ReasonNoMatchingPool, "no IP pool is allowed for this Service")
		}
		return Assignment{}, errorf(ReasonNoMatchingPool, "none of the allowed pools %v exists", pl.req.Pools)
	}
	var withFamily, tried []string
	for _, p := range pl.allowed {
		if len(p.fam(f).ranges) > 0 {
			withFamily = append(withFamily, p.Name)
		}
	}
	if len(withFamily) == 0 {
		return Assignment{}, errorf(ReasonNoMatchingPool, "no allowed pool has %v addresses (allowed: %v)", f, names(pl.allowed))
	}
	for _, p := range pl.usable {
		fp := p.fam(f)
		if len(fp.ranges) == 0 {
			continue
		}
		tried = append(tried, p.Name)
		if x, ok := fp.lowestFree(); ok {
			return Assignment{Addr: x.addr(f), Pool: p.Name}, nil
		}
	}
	if len(tried) == 0 {
		var draining []string
		for _, p := range pl.allowed {
			if p.Draining && len(p.fam(f).ranges) > 0 {
				draining = append(draining, p.Name)
			}
		}
		if len(draining) > 0 {
			return Assignment{}, errorf(ReasonNoMatchingPool,
				"pools %v are draining (being deleted or invalid) and hand out no new addresses", draining)
		}
		return Assignment{}, errorf(ReasonNoMatchingPool,
			"pools %v have autoAssign disabled; request one of their addresses or name the pools explicitly", withFamily)
	}
	return Assignment{}, errorf(ReasonPoolExhausted, "pools %v have no free %v address", tried, f)
}

// unavailable explains why a requested address is in no allowed pool.
func (a *Allocator) unavailable(pl *plan, r netip.Addr) *Error {
	x, f := u128From(r), familyOf(r)
	if block, ok := SpecialPurpose(r); ok {
		return errorf(ReasonRequestedAddressUnavailable,
			"%s is a special-purpose address (in %s: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out", r, block)
	}
	for _, p := range pl.allowed {
		fp := p.fam(f)
		switch {
		case !fp.inRanges(x):
		case fp.isReserved(x):
			return errorf(ReasonRequestedAddressUnavailable, "%s is reserved in pool %q", r, p.Name)
		case fp.avoidBuggy && isBuggy(x):
			return errorf(ReasonRequestedAddressUnavailable,
				"%s ends in .0 or .255, which pool %q avoids (avoidBuggyIPs)", r, p.Name)
		}
	}
	switch owners := poolsOf(a.byName, r); len(owners) {
	case 0:
		return errorf(ReasonRequestedAddressUnavailable, "no pool contains %s", r)
	case 1:
		return errorf(ReasonRequestedAddressUnavailable, "no allowed pool contains %s (it belongs to pool %q)", r, owners[0])
	default:
		return errorf(ReasonRequestedAddressUnavailable, "no allowed pool contains %s (it belongs to pools %v)", r, owners)
	}
}

func names(pools []*poolState) []string {
	out := make([]string, len(pools))
	for i, p := range pools {
		out[i] = p.Name
	}
	return out
}

func joinErrors(errs []*Error) *Error {
	if len(errs) == 1 {
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Msg
	}
	return &Error{Reason: errs[0].Reason, Msg: strings.Join(msgs, "; ")}
}
