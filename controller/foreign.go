package controller

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/config"
)

// foreignPrefix marks the allocator identities of LoadBalancer Services the
// controller does not handle (berth-ccm's, or any other implementation's)
// whose status shows addresses inside a pool. Recording them keeps the
// controller from handing those addresses out again. berth-ccm uses the
// same prefix for the reverse, so allocator messages read alike in both.
const foreignPrefix = "foreign:"

// foreignState is what the controller knows about foreign Services beyond
// the allocator's record. Guarded by Controller.foreignMu.
type foreignState struct {
	// tracked holds every Service with a foreign identity in the
	// allocator or a claim, so that the handled path finds "nothing to
	// drop" without asking the allocator.
	tracked map[string]struct{}
	// claims lists, by address, the foreign Services whose status shows
	// the address but which could not be recorded as holding it, because
	// someone else held it first. When that holder lets it go, the
	// claimants are recorded before anyone else can be given it.
	claims map[netip.Addr][]string
	// claimed is the reverse of claims.
	claimed map[string][]netip.Addr
}

// isForeign reports whether the Service is a LoadBalancer someone else
// serves, whose addresses the controller must therefore respect but never
// write.
func (c *Controller) isForeign(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && !c.handles(svc)
}

// mayBeForeign is isForeign for an informer event's object.
func (c *Controller) mayBeForeign(obj any) bool {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	svc, ok := obj.(*corev1.Service)
	return ok && c.isForeign(svc)
}

// serviceChanged queues the Service and, once the state is rebuilt, brings
// the record of a foreign Service up to date at once. Doing that here rather
// than in a worker orders it before every later event: a Service created
// after another implementation wrote an address is queued only after that
// address is recorded, so no worker running ahead can hand it out.
func (c *Controller) serviceChanged(oldObj, newObj any) {
	obj := newObj
	if obj == nil {
		obj = oldObj
	}
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	if c.ready.Load() && (c.mayBeForeign(oldObj) || c.mayBeForeign(newObj)) {
		c.syncForeign(c.log, key)
	}
	c.svcQueue.Add(key)
}

// syncForeign brings what the controller records for the foreign side of
// the Service with key in line with the Service as the cache has it now.
// Its callers race (the event handler, workers, a pool rebuild), so it reads
// the Service itself under foreignMu: whoever runs last acts on the newest
// state.
func (c *Controller) syncForeign(log logr.Logger, key string) {
	c.foreignMu.Lock()
	defer c.foreignMu.Unlock()
	c.syncForeignLocked(log, key)
}

func (c *Controller) syncForeignLocked(log logr.Logger, key string) {
	var svc *corev1.Service
	if ns, name, err := cache.SplitMetaNamespaceKey(key); err == nil {
		svc, _ = c.services.Services(ns).Get(name)
	}
	switch {
	case svc == nil || !c.isForeign(svc):
		c.dropForeignLocked(log, key)
	case len(c.alloc.Lookup(key)) > 0:
		// Still recorded as the controller's own: unhandle releases that
		// and comes back here.
	default:
		c.holdForeign(log, svc)
	}
}

// dropForeign forgets the foreign side of a Service the controller now
// handles, so that it keeps the addresses it shows if they are valid.
func (c *Controller) dropForeign(log logr.Logger, key string) {
	c.foreignMu.Lock()
	defer c.foreignMu.Unlock()
	c.dropForeignLocked(log, key)
}

func (c *Controller) dropForeignLocked(log logr.Logger, key string) {
	if _, ok := c.foreign.tracked[key]; !ok {
		return
	}
	before := c.alloc.Lookup(foreignPrefix + key)
	c.alloc.Release(foreignPrefix + key)
	c.setForeign(log, key, before, nil, nil)
}

// holdForeign records the Service's status addresses that lie in a pool,
// one per family (the allocator's limit per holder), under the Service's
// foreign identity, with its sharing key and ports so that Services sharing
// an address on both sides stay compatible. Called with foreignMu held. An
// address someone else holds already is logged and claimed, not fought
// over: the controller never writes to a Service it does not handle.
func (c *Controller) holdForeign(log logr.Logger, svc *corev1.Service) {
	key := config.Key(svc)
	req, extra := c.poolConfig.Load().HoldingRequest(svc, foreignPrefix+key)
	log = log.WithValues("service", klog.KObj(svc))
	if len(extra) > 0 {
		log.Info("A Service served by another implementation shows several addresses of one family in the pools; only the first of each family is kept from being handed out", "ignored", addrList(extra))
	}
	if len(req.Requested) == 0 {
		c.dropForeignLocked(log, key)
		return
	}
	before := c.alloc.Lookup(req.Service)
	got, err := c.alloc.Assign(req)
	if err != nil {
		// Nothing of it can be recorded, and what was recorded before
		// (a failed Assign keeps it) is no longer what the status shows.
		c.alloc.Release(req.Service)
		got = nil
	}
	var missed []netip.Addr
	for _, a := range req.Requested {
		if !hasAddr(got, a) {
			missed = append(missed, a)
		}
	}
	if len(missed) > 0 {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		log.Info("A Service served by another implementation shows an address Berth holds for another Service; it is not recorded for this one until that lets it go", "addresses", addrList(missed), "err", msg)
	}
	c.setForeign(log, key, before, got, missed)
}

// setForeign notes that the Service's foreign holding went from before to
// got in the allocator and that it claims missed, and gives the addresses
// it let go to the Services waiting for them. Called with foreignMu held.
func (c *Controller) setForeign(log logr.Logger, key string, before, got []allocator.Assignment, missed []netip.Addr) {
	c.touchPools(before, got)
	for _, a := range c.foreign.claimed[key] {
		c.foreign.claims[a] = slices.DeleteFunc(c.foreign.claims[a], func(k string) bool { return k == key })
		if len(c.foreign.claims[a]) == 0 {
			delete(c.foreign.claims, a)
		}
	}
	delete(c.foreign.claimed, key)
	for _, a := range missed {
		c.foreign.claims[a] = append(c.foreign.claims[a], key)
	}
	if len(missed) > 0 {
		c.foreign.claimed[key] = missed
	}
	if len(got) > 0 || len(missed) > 0 {
		c.foreign.tracked[key] = struct{}{}
	} else {
		delete(c.foreign.tracked, key)
	}
	c.giveToClaimants(log, before, got)
}

// freed reports the addresses of before that after no longer has.
func freed(before, after []allocator.Assignment) []netip.Addr {
	var out []netip.Addr
	for _, as := range before {
		if !hasAddr(after, as.Addr) {
			out = append(out, as.Addr)
		}
	}
	return out
}

// released is called after a Service the controller handles went from
// holding before to holding after: foreign Services waiting for an address
// it let go are recorded as its holders at once, so that the next
// allocation cannot hand it out while their status still shows it.
func (c *Controller) released(log logr.Logger, before, after []allocator.Assignment) {
	if len(freed(before, after)) == 0 {
		return
	}
	c.foreignMu.Lock()
	defer c.foreignMu.Unlock()
	c.giveToClaimants(log, before, after)
}

// giveToClaimants records again the foreign Services that claim an address
// of before that after no longer holds. Called with foreignMu held.
func (c *Controller) giveToClaimants(log logr.Logger, before, after []allocator.Assignment) {
	for _, a := range freed(before, after) {
		for _, k := range slices.Clone(c.foreign.claims[a]) {
			c.syncForeignLocked(log, k)
		}
	}
}

func hasAddr(as []allocator.Assignment, a netip.Addr) bool {
	return slices.ContainsFunc(as, func(x allocator.Assignment) bool { return x.Addr == a })
}

// holderNames turns the allocator's holders of a pool into Service names
// for the pool's status ("namespace/name", sorted, each once) and counts
// those served by another implementation: their addresses are in use too,
// so they count, and they keep a deleted pool's finalizer like any holder.
func holderNames(ids []string) (names []string, foreign int) {
	for _, id := range ids {
		if strings.HasPrefix(id, foreignPrefix) {
			foreign++
		}
	}
	if foreign == 0 {
		return ids, 0
	}
	names = make([]string, len(ids))
	for i, id := range ids {
		names[i] = strings.TrimPrefix(id, foreignPrefix)
	}
	slices.Sort(names)
	return slices.Compact(names), foreign
}
