package ledger

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/config"
)

// ForeignPrefix marks the allocator identities of LoadBalancer Services this
// implementation does not serve (berth-ccm's for the controller, the
// controller's for berth-ccm, or any other implementation's) whose status
// shows addresses inside a pool. Holding them keeps those addresses from
// being handed out again.
const ForeignPrefix = "foreign:"

// foreignState is what the ledger knows about foreign Services beyond the
// allocator's record. Guarded by Ledger.mu.
type foreignState struct {
	// tracked holds every Service with a foreign holding or a claim, so
	// that the served path finds "nothing to drop" without asking the
	// allocator.
	tracked map[string]struct{}
	// claims lists, by address, the foreign Services whose status shows
	// the address but which could not be recorded as holding it, because
	// someone else held it first. When that holder lets it go, the
	// claimants are recorded before anyone else can be given it.
	claims map[netip.Addr][]string
	// claimed is the reverse of claims.
	claimed map[string][]netip.Addr
}

func newForeignState() foreignState {
	return foreignState{tracked: map[string]struct{}{}, claims: map[netip.Addr][]string{}, claimed: map[string][]netip.Addr{}}
}

// SyncForeign brings the foreign holding of the Service with key in line
// with the Service as the lister has it now: held if it is a LoadBalancer
// served by someone else, dropped if it is gone or no LoadBalancer. A
// Service this implementation serves is left to Assign, which takes over
// its holding under the same lock (until then its holding follows its
// status). Before Restore it only notes the key.
// Its callers race (event handlers, workers), so it reads the Service
// itself under the lock: whoever runs last acts on the newest state.
func (l *Ledger) SyncForeign(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.restored {
		l.pending[key] = struct{}{}
		return
	}
	l.syncForeign(key)
}

func (l *Ledger) syncForeign(key string) {
	svc, _ := l.get(key)
	switch {
	case svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer:
		l.dropForeign(key)
	case l.opts.Serves(svc):
		// Served now: until Assign takes over what its status shows
		// (under the same lock, so no one takes it between), the
		// foreign holding follows its status, which may have let go.
		if _, tracked := l.foreign.tracked[key]; tracked {
			l.holdForeign(svc)
		}
	case len(l.alloc.Lookup(key)) > 0:
		// Still recorded as served: its release calls back here.
	default:
		l.holdForeign(svc)
	}
}

// dropForeign forgets the foreign holding and claims of a Service. Called
// with mu held.
func (l *Ledger) dropForeign(key string) {
	if _, ok := l.foreign.tracked[key]; !ok {
		return
	}
	before := l.alloc.Lookup(ForeignPrefix + key)
	l.alloc.Release(ForeignPrefix + key)
	l.setForeign(key, nil, nil)
	l.poolsChanged(before, nil)
	l.giveToClaimants(freedAddrs(before, nil))
}

// holdForeign records the Service's status addresses that lie in a pool,
// one per family, under its foreign identity, with its sharing key, ports
// and backends so that Services sharing an address on both sides stay
// compatible. An address someone else holds already is claimed, not
// fought over: nobody writes to a Service it does not serve. Called with
// mu held.
func (l *Ledger) holdForeign(svc *corev1.Service) {
	key := config.Key(svc)
	req, _ := l.cfg.Load().HoldingRequest(svc, ForeignPrefix+key)
	before := l.alloc.Lookup(req.Service)
	if len(req.Requested) == 0 {
		l.dropForeign(key)
		return
	}
	got, missed := l.recordForeign(req)
	var moved []string
	if l.opts.YieldToForeign && len(missed) > 0 {
		if moved = l.evict(l.servedHolders(missed), missed); len(moved) > 0 {
			got, missed = l.recordForeign(req)
		}
	}
	l.setForeign(key, got, missed)
	l.poolsChanged(before, got)
	l.giveToClaimants(freedAddrs(before, got))
	if l.restored {
		l.moveEvicted(moved)
	}
}

// recordForeign records what it can of a foreign Service's holding
// request and returns what it got and the addresses it missed (held by
// someone else). Called with mu held.
func (l *Ledger) recordForeign(req allocator.Request) (got []allocator.Assignment, missed []netip.Addr) {
	got, _, err := l.alloc.AssignPartial(req)
	if err != nil {
		// Nothing of it can be recorded, and what was recorded before (a
		// failed Assign keeps it) is no longer what the status shows.
		l.alloc.Release(req.Service)
		got = nil
	}
	for _, a := range req.Requested {
		if !hasAddr(got, a) {
			missed = append(missed, a)
		}
	}
	return got, missed
}

// servedHolders returns the served Services holding one of addrs. Called
// with mu held.
func (l *Ledger) servedHolders(addrs []netip.Addr) []string {
	var out []string
	for _, a := range addrs {
		for _, pool := range l.alloc.PoolsContaining(a) {
			for _, id := range l.alloc.Holders(pool) {
				if !strings.HasPrefix(id, ForeignPrefix) && !slices.Contains(out, id) && hasAddr(l.alloc.Lookup(id), a) {
					out = append(out, id)
				}
			}
		}
	}
	return out
}

// evict takes addrs from the served Services with keys, which keep the
// rest of what they hold, and returns the keys. Called with mu held.
func (l *Ledger) evict(keys []string, addrs []netip.Addr) []string {
	cfg := l.cfg.Load()
	for _, k := range keys {
		before := l.alloc.Lookup(k)
		l.alloc.Release(k)
		rest := []netip.Addr{}
		for _, as := range before {
			if !slices.Contains(addrs, as.Addr) {
				rest = append(rest, as.Addr)
			}
		}
		if svc, _ := l.get(k); svc != nil && len(rest) > 0 {
			l.keep(cfg, svc, rest)
		}
		l.poolsChanged(before, l.alloc.Lookup(k))
	}
	return keys
}

// moveEvicted gives the evicted Services new addresses and tells the
// caller. Before Restore it does nothing: Restore's caller judges every
// served Service afterwards, oldest first. Called with mu held.
func (l *Ledger) moveEvicted(keys []string) {
	for _, k := range keys {
		svc, _ := l.get(k)
		if svc == nil || !l.opts.Serves(svc) {
			l.waiting.remove(k)
		} else if nsLabels, ok := l.namespaceLabels(svc.Namespace); ok {
			out := l.judge(svc, nsLabels)
			l.giveToClaimants(freedAddrs(out.Before, out.Got))
		}
		if l.opts.Moved != nil {
			l.opts.Moved(k)
		}
	}
}

// setForeign notes that the Service's foreign holding is got and that it
// claims missed. Called with mu held.
func (l *Ledger) setForeign(key string, got []allocator.Assignment, missed []netip.Addr) {
	for _, a := range l.foreign.claimed[key] {
		l.foreign.claims[a] = slices.DeleteFunc(l.foreign.claims[a], func(k string) bool { return k == key })
		if len(l.foreign.claims[a]) == 0 {
			delete(l.foreign.claims, a)
		}
	}
	delete(l.foreign.claimed, key)
	for _, a := range missed {
		l.foreign.claims[a] = append(l.foreign.claims[a], key)
	}
	if len(missed) > 0 {
		l.foreign.claimed[key] = missed
	}
	if len(got) > 0 || len(missed) > 0 {
		l.foreign.tracked[key] = struct{}{}
	} else {
		delete(l.foreign.tracked, key)
	}
}

// giveToClaimants records again the foreign Services that claim one of
// the freed addresses. Called with mu held.
func (l *Ledger) giveToClaimants(freed []netip.Addr) {
	for _, a := range freed {
		for _, k := range slices.Clone(l.foreign.claims[a]) {
			l.syncForeign(k)
		}
	}
}

// HolderNames turns the holders of a pool into Service names for the
// pool's status ("namespace/name", sorted, each once) and counts those
// served by another implementation: their addresses are in use too, so
// they count, and they keep a deleted pool's finalizer like any holder.
func HolderNames(ids []string) (names []string, foreign int) {
	for _, id := range ids {
		if strings.HasPrefix(id, ForeignPrefix) {
			foreign++
		}
	}
	if foreign == 0 {
		return ids, 0
	}
	names = make([]string, len(ids))
	for i, id := range ids {
		names[i] = strings.TrimPrefix(id, ForeignPrefix)
	}
	slices.Sort(names)
	return slices.Compact(names), foreign
}
