package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// Event reasons on Services.
const (
	eventAllocated      = "AddressAllocated"
	eventChanged        = "AddressChanged"
	eventReleased       = "AddressReleased"
	eventAllocateFailed = "AllocationFailed"
)

// syncService brings one Service's allocation and status in line with its
// spec and the pools.
func (c *Controller) syncService(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // a malformed key never heals
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("service", klog.KRef(ns, name))
	ctx = logr.NewContext(ctx, log)

	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.release(ctx, key)
		c.written.Delete(key)
		c.syncForeign(log, key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get service from cache: %w", err)
	}
	if !c.handles(svc) {
		return c.unhandle(ctx, svc)
	}
	// A Service someone else served until now keeps the addresses it
	// shows, if valid, once they stop being recorded as someone else's.
	c.dropForeign(log, key)

	var nsLabels labels.Set
	if nsObj, err := c.namespaces.Get(ns); err == nil {
		nsLabels = nsObj.Labels
	}
	cfg := c.poolConfig.Load()
	before := c.alloc.Lookup(key)
	current := config.CurrentAddresses(svc)

	req, err := cfg.Request(svc, nsLabels)
	var got []allocator.Assignment
	if err == nil {
		got, err = c.alloc.Assign(req)
	}
	if err != nil {
		return c.failed(ctx, svc, cfg, before, current, err)
	}

	c.touchPools(before, got)
	c.released(log, before, got)
	wrote, werr := c.writeStatus(ctx, svc, got, cfg, metaCondition(svc, true, v1alpha1.ReasonAllocated, describe(got)))
	if werr != nil {
		return werr
	}
	if wrote {
		c.announce(ctx, svc, current, got)
	}
	return nil
}

// failed handles a Service that cannot be served as it is written.
func (c *Controller) failed(ctx context.Context, svc *corev1.Service, cfg *config.Config, before []allocator.Assignment, current []netip.Addr, err error) error {
	reason, msg := failure(err)
	c.metrics.failures.WithLabelValues(reason).Inc()
	if reason == v1alpha1.ReasonInvalidRequest && len(before) > 0 {
		// A typo in an annotation must not cost a working address: keep
		// what the Service holds and say what to fix.
		msg += "; keeping " + describe(before) + " until this is fixed"
		wrote, werr := c.writeStatus(ctx, svc, before, cfg, metaCondition(svc, false, reason, msg))
		if wrote {
			c.recorder.Event(svc, corev1.EventTypeWarning, eventAllocateFailed, msg)
		}
		return werr
	}
	// Otherwise the Service holds nothing, so that it never keeps an
	// address from a pool it may no longer use.
	c.release(ctx, config.Key(svc))
	wrote, werr := c.writeStatus(ctx, svc, nil, cfg, metaCondition(svc, false, reason, msg))
	if wrote {
		if len(current) > 0 {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, eventReleased, "Released %s: %s", addrList(current), msg)
		} else {
			c.recorder.Event(svc, corev1.EventTypeWarning, eventAllocateFailed, msg)
		}
	}
	return werr
}

// announce records what changed for the user: an Event for a first
// allocation, and one naming old and new addresses whenever a held address
// had to move.
func (c *Controller) announce(ctx context.Context, svc *corev1.Service, current []netip.Addr, got []allocator.Assignment) {
	addrs := make([]netip.Addr, len(got))
	for i, a := range got {
		addrs[i] = a.Addr
	}
	var lost []netip.Addr
	for _, a := range current {
		if !slices.Contains(addrs, a) {
			lost = append(lost, a)
		}
	}
	var added []netip.Addr
	for _, a := range addrs {
		if !slices.Contains(current, a) {
			added = append(added, a)
		}
	}
	switch {
	case len(lost) > 0:
		c.metrics.allocations.Add(float64(len(added)))
		c.recorder.Eventf(svc, corev1.EventTypeWarning, eventChanged,
			"Address %s is no longer valid for this Service (removed from its pool, reserved, or held by an older Service); now %s", addrList(lost), describe(got))
		logr.FromContextOrDiscard(ctx).Info("Moved addresses", "old", addrList(lost), "new", describe(got))
	case len(added) > 0:
		c.metrics.allocations.Add(float64(len(added)))
		c.recorder.Eventf(svc, corev1.EventTypeNormal, eventAllocated, "Allocated %s", describe(got))
		logr.FromContextOrDiscard(ctx).V(2).Info("Allocated", "addresses", describe(got))
	}
}

// unhandle releases a Service that is not (or no longer) Berth's, records
// what its status shows as someone else's, and takes back the status Berth
// wrote on it.
func (c *Controller) unhandle(ctx context.Context, svc *corev1.Service) error {
	key := config.Key(svc)
	held := c.alloc.Lookup(key)
	if len(held) > 0 {
		c.release(ctx, key)
		c.recorder.Eventf(svc, corev1.EventTypeNormal, eventReleased, "Released %s: the Service is no longer a LoadBalancer handled by Berth", describe(held))
	}
	// Also when the event handler did it already: it skips Services it
	// sees before the state is rebuilt, and ones still recorded as Berth's.
	c.syncForeign(logr.FromContextOrDiscard(ctx), key)
	if findCondition(svc) == nil {
		return nil // nothing of ours on it
	}
	return c.writer.clearServiceStatus(ctx, svc.Namespace, svc.Name)
}

// release frees everything a Service the controller handles holds.
func (c *Controller) release(ctx context.Context, key string) {
	held := c.alloc.Lookup(key)
	if len(held) == 0 {
		return
	}
	c.alloc.Release(key)
	c.touchPools(held, nil)
	c.released(logr.FromContextOrDiscard(ctx), held, nil)
}

// touchPools schedules a status update of every pool whose use changed.
func (c *Controller) touchPools(before, after []allocator.Assignment) {
	if slices.Equal(before, after) {
		return
	}
	seen := map[string]bool{}
	for _, a := range slices.Concat(before, after) {
		if !seen[a.Pool] {
			seen[a.Pool] = true
			c.poolQueue.AddAfter(a.Pool, c.cfg.PoolStatusDelay)
		}
	}
}

func failure(err error) (reason, msg string) {
	var re *config.RequestError
	if errors.As(err, &re) {
		return re.Reason, re.Msg
	}
	if r := allocator.ReasonOf(err); r != "" {
		return string(r), err.Error()
	}
	return v1alpha1.ReasonInvalidRequest, err.Error()
}

func describe(as []allocator.Assignment) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = fmt.Sprintf("%s (pool %s)", a.Addr, a.Pool)
	}
	return strings.Join(parts, ", ")
}

func addrList(as []netip.Addr) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}
