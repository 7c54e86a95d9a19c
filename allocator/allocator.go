package allocator

import (
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Allocator records which Service holds which address and decides new
// assignments. The zero value has no pools; New is the usual constructor.
// All methods are safe for concurrent use: one mutex guards everything,
// because every operation is short and must see a consistent global record.
type Allocator struct {
	mu sync.Mutex

	pools    map[string]*poolState
	byName   []*poolState // sorted by name, for deterministic scans
	services map[string]*service
	// addrs is the global record: every held address and its holders.
	// It is what keeps overlapping pools from double-allocating.
	addrs map[netip.Addr]*holding
	// byKey indexes held addresses by their holders' sharing key, so that a
	// Service with a key finds addresses to join without a scan.
	byKey map[string]map[netip.Addr]struct{}
	// poolHolders indexes services by the pools recorded in their
	// assignments, for Holders.
	poolHolders map[string]map[string]struct{}
}

// service is what the allocator remembers about a Service between calls:
// its assignments and the attributes other Services are checked against
// when they want to share its addresses.
type service struct {
	name, namespace        string
	sharingKey, backendKey string
	ports                  []Port
	assigned               []Assignment
}

// holding lists the services holding one address, sorted by name so that
// error messages are deterministic.
type holding struct{ holders []*service }

// Assignment is one address given to a Service, with the pool it came from.
type Assignment struct {
	Addr netip.Addr
	Pool string
}

// New returns an allocator with no pools and no allocations.
func New() *Allocator {
	a := &Allocator{}
	a.lazyInit()
	return a
}

// lazyInit makes the zero value usable; called with mu held.
func (a *Allocator) lazyInit() {
	if a.services != nil {
		return
	}
	a.pools = map[string]*poolState{}
	a.services = map[string]*service{}
	a.addrs = map[netip.Addr]*holding{}
	a.byKey = map[string]map[netip.Addr]struct{}{}
	a.poolHolders = map[string]map[string]struct{}{}
}

// SetPools replaces the pool set. Allocations are kept as recorded, even
// those no pool allows any more: moving a working address is the caller's
// decision, made after asking Invalid and Holders. If two pools share a
// name, the first wins. Cost: O(R log R) per pool to compile ranges, plus
// O(n·P·log n) to rebuild the per-pool records of the n held addresses.
func (a *Allocator) SetPools(pools []Pool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lazyInit()
	a.pools = make(map[string]*poolState, len(pools))
	a.byName = a.byName[:0]
	for _, p := range pools {
		if _, dup := a.pools[p.Name]; dup {
			continue
		}
		ps := newPoolState(p)
		a.pools[p.Name] = ps
		a.byName = append(a.byName, ps)
	}
	sort.Slice(a.byName, func(i, j int) bool { return a.byName[i].Name < a.byName[j].Name })
	held := make([]netip.Addr, 0, len(a.addrs))
	for addr := range a.addrs {
		held = append(held, addr)
	}
	slices.SortFunc(held, netip.Addr.Compare)
	for _, addr := range held {
		a.forPools(addr, (*famPool).add)
	}
}

// forPools calls fn for every pool in which addr is allocatable.
func (a *Allocator) forPools(addr netip.Addr, fn func(*famPool, u128)) {
	x, f := u128From(addr), familyOf(addr)
	for _, p := range a.byName {
		if fp := p.fam(f); fp.allocatable(x) {
			fn(fp, x)
		}
	}
}

// Release frees everything the Service holds. Releasing an unknown Service
// does nothing, so the caller can release on every delete event.
func (a *Allocator) Release(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lazyInit()
	svc := a.services[name]
	if svc == nil {
		return
	}
	for _, as := range svc.assigned {
		a.unhold(svc, as.Addr)
		a.reindex(as.Addr, svc.sharingKey)
	}
	a.setPoolHolders(svc, nil)
	delete(a.services, name)
}

// hold adds svc as a holder of addr.
func (a *Allocator) hold(svc *service, addr netip.Addr) {
	h := a.addrs[addr]
	if h == nil {
		h = &holding{}
		a.addrs[addr] = h
		a.forPools(addr, (*famPool).add)
	}
	i, found := slices.BinarySearchFunc(h.holders, svc.name, func(s *service, n string) int {
		return strings.Compare(s.name, n)
	})
	if !found {
		h.holders = slices.Insert(h.holders, i, svc)
	}
}

// unhold removes svc from the holders of addr, freeing it when none remain.
func (a *Allocator) unhold(svc *service, addr netip.Addr) {
	h := a.addrs[addr]
	if h == nil {
		return
	}
	h.holders = slices.DeleteFunc(h.holders, func(s *service) bool { return s == svc })
	if len(h.holders) == 0 {
		delete(a.addrs, addr)
		a.forPools(addr, (*famPool).del)
	}
}

// reindex brings byKey up to date for addr after its holders or their keys
// changed; keys lists the sharing keys that may have been affected.
func (a *Allocator) reindex(addr netip.Addr, keys ...string) {
	for _, k := range keys {
		if k == "" {
			continue
		}
		held := false
		if h := a.addrs[addr]; h != nil {
			for _, s := range h.holders {
				held = held || s.sharingKey == k
			}
		}
		set := a.byKey[k]
		switch {
		case held && set == nil:
			a.byKey[k] = map[netip.Addr]struct{}{addr: {}}
		case held:
			set[addr] = struct{}{}
		case set != nil:
			delete(set, addr)
			if len(set) == 0 {
				delete(a.byKey, k)
			}
		}
	}
}

// setPoolHolders records that svc now holds addresses from the pools of
// next instead of those of its current assignments.
func (a *Allocator) setPoolHolders(svc *service, next []Assignment) {
	for _, as := range svc.assigned {
		if set := a.poolHolders[as.Pool]; set != nil {
			delete(set, svc.name)
			if len(set) == 0 {
				delete(a.poolHolders, as.Pool)
			}
		}
	}
	for _, as := range next {
		set := a.poolHolders[as.Pool]
		if set == nil {
			set = map[string]struct{}{}
			a.poolHolders[as.Pool] = set
		}
		set[svc.name] = struct{}{}
	}
}

// Lookup returns what a Service currently holds, in the order of the
// families of its last successful Assign; nil if nothing.
func (a *Allocator) Lookup(name string) []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	if svc := a.services[name]; svc != nil {
		return slices.Clone(svc.assigned)
	}
	return nil
}

// Holders returns the services (sorted) whose recorded assignments name the
// pool, even if the pool no longer exists, so a "pool in use" finalizer is
// not lifted while Services still use its addresses.
func (a *Allocator) Holders(pool string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return sortedKeys(a.poolHolders[pool])
}

// Invalid returns the services (sorted) holding an address that their
// recorded pool no longer allows: the pool is gone, the address left its
// ranges, or it is now reserved or avoided as buggy. It also reports
// Services sharing an address across namespaces in a pool that no longer
// allows that. The caller re-Assigns them; valid addresses are never moved.
func (a *Allocator) Invalid() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for name, svc := range a.services {
		for _, as := range svc.assigned {
			if !a.stillValid(svc, as) {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func (a *Allocator) stillValid(svc *service, as Assignment) bool {
	p, h := a.pools[as.Pool], a.addrs[as.Addr]
	if p == nil || h == nil || !p.fam(familyOf(as.Addr)).allocatable(u128From(as.Addr)) {
		return false
	}
	for _, h := range h.holders {
		crossOK := p.AllowCrossNamespaceSharing && a.allowsCross(h, as.Addr)
		if h.namespace != svc.namespace && !crossOK {
			return false
		}
	}
	return true
}

// allowsCross reports whether the pool recorded for h's hold on addr
// allows cross-namespace sharing.
func (a *Allocator) allowsCross(h *service, addr netip.Addr) bool {
	for _, as := range h.assigned {
		if as.Addr == addr {
			p := a.pools[as.Pool]
			return p != nil && p.AllowCrossNamespaceSharing
		}
	}
	return false
}

// PoolsContaining returns the names of pools whose ranges contain addr,
// reserved or not (sorted), so the caller can explain "address X belongs to
// pool Y, which you may not use".
func (a *Allocator) PoolsContaining(addr netip.Addr) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !addr.IsValid() || addr.Zone() != "" {
		return nil
	}
	return poolsOf(a.byName, addr)
}

// FamilyStats counts one family's addresses of a pool exactly. Total counts
// the allocatable addresses: in the ranges (overlaps once), not reserved,
// not .0/.255 when avoiding buggy IPs. Used counts those held by any
// Service, whichever pool is recorded for it and counting shared addresses
// once, so Free is exactly how many more addresses the pool can hand out.
type FamilyStats struct{ Total, Used, Free *big.Int }

// PoolStats is a pool's occupancy, for status and metrics.
type PoolStats struct {
	IPv4, IPv6 FamilyStats
	// Overlaps names the other pools whose ranges share addresses with
	// this pool's (sorted); overlaps are legal but usually a mistake.
	Overlaps []string
}

// Stats returns the pool's counts, or false if there is no such pool. The
// counts are maintained incrementally, so the cost is O(1) per family plus
// O(P·R) to find overlapping pools.
func (a *Allocator) Stats(pool string) (PoolStats, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pools[pool]
	if p == nil {
		return PoolStats{}, false
	}
	st := PoolStats{IPv4: p.v4.stats(), IPv6: p.v6.stats()}
	for _, o := range a.byName {
		if o != p && overlaps(p, o) {
			st.Overlaps = append(st.Overlaps, o.Name)
		}
	}
	return st, true
}

func (fp *famPool) stats() FamilyStats {
	used := big.NewInt(int64(fp.used))
	return FamilyStats{
		Total: new(big.Int).Set(fp.total),
		Used:  used,
		Free:  new(big.Int).Sub(fp.total, used),
	}
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
