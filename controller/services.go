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
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/ledger"
)

// Event reasons on Services.
const (
	eventAllocated      = "AddressAllocated"
	eventChanged        = "AddressChanged"
	eventReleased       = "AddressReleased"
	eventAllocateFailed = "AllocationFailed"
	eventPartial        = v1alpha1.ReasonPartiallyAllocated
)

// serviceChanged queues the Service and brings the record of a foreign
// Service up to date at once. Doing that here rather than in a worker
// orders it before every later event: a Service created after another
// implementation wrote an address is queued only after that address is
// recorded, so no worker running ahead can hand it out. (Before the state
// is rebuilt the ledger only notes the key.)
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
	if c.mayBeForeign(oldObj) || c.mayBeForeign(newObj) {
		c.ledger.SyncForeign(key)
	}
	c.svcQueue.Add(key)
}

// mayBeForeign reports whether an informer event's object is a
// LoadBalancer someone else serves.
func (c *Controller) mayBeForeign(obj any) bool {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	svc, ok := obj.(*corev1.Service)
	return ok && svc.Spec.Type == corev1.ServiceTypeLoadBalancer && !c.handles(svc)
}

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
		_, wake := c.ledger.Release(key)
		c.written.Delete(key)
		c.ledger.SyncForeign(key)
		c.wake(wake)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get service from cache: %w", err)
	}
	if !c.handles(svc) {
		return c.unhandle(ctx, svc)
	}
	out, err := c.ledger.Assign(svc)
	if err != nil {
		// Its namespace's arrival queues it again; the retry is a backstop.
		return fmt.Errorf("judge service: %w", err)
	}
	defer c.wake(out.Wake)
	cfg := c.ledger.Config()
	current := config.CurrentAddresses(svc)
	if out.Err != nil {
		return c.failed(ctx, svc, cfg, out, current)
	}
	cond := metaCondition(svc, true, v1alpha1.ReasonAllocated, describe(out.Got))
	if len(out.Missing) > 0 {
		cond = metaCondition(svc, false, v1alpha1.ReasonPartiallyAllocated, partialMessage(out))
	}
	wrote, werr := c.writeStatus(ctx, svc, out.Got, cfg, cond)
	if werr != nil {
		return werr
	}
	if wrote {
		c.announce(ctx, svc, current, out.Got)
		if len(out.Missing) > 0 {
			c.recorder.Event(svc, corev1.EventTypeWarning, eventPartial, cond.Message)
		}
	}
	return nil
}

// wake queues the Services the ledger gave addresses that someone freed.
func (c *Controller) wake(keys []string) {
	for _, k := range keys {
		c.svcQueue.Add(k)
	}
}

// partialMessage says what a Service got and, per missing family, why it
// did not get it.
func partialMessage(out ledger.Outcome) string {
	parts := make([]string, len(out.Missing))
	for i, m := range out.Missing {
		parts[i] = fmt.Sprintf("no %v address: %s", m.Family, m.Err.Msg)
	}
	return fmt.Sprintf("got only %s; %s", describe(out.Got), strings.Join(parts, "; "))
}

// failed handles a Service that cannot be served as it is written. The
// ledger has released what it held, unless it keeps it (out.Kept).
func (c *Controller) failed(ctx context.Context, svc *corev1.Service, cfg *config.Config, out ledger.Outcome, current []netip.Addr) error {
	reason, msg := failure(out.Err)
	c.metrics.failures.WithLabelValues(reason).Inc()
	if out.Kept {
		msg += "; keeping " + describe(out.Got) + " until this is fixed"
		wrote, werr := c.writeStatus(ctx, svc, out.Got, cfg, metaCondition(svc, false, reason, msg))
		if wrote {
			c.recorder.Event(svc, corev1.EventTypeWarning, eventAllocateFailed, msg)
		}
		return werr
	}
	wrote, werr := c.writeStatus(ctx, svc, nil, cfg, metaCondition(svc, false, reason, msg))
	if wrote {
		if len(current) > 0 {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, eventReleased, "Released %s%s: %s", addrList(current), clusterUse(cfg, current), msg)
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
			"Address %s is no longer valid for this Service (%s); now %s", addrList(lost), whyLost(c.ledger.Config(), lost), describe(got))
		logr.FromContextOrDiscard(ctx).Info("Moved addresses", "old", addrList(lost), "new", describe(got))
	case len(added) > 0:
		c.metrics.allocations.Add(float64(len(added)))
		c.recorder.Eventf(svc, corev1.EventTypeNormal, eventAllocated, "Allocated %s", describe(got))
		logr.FromContextOrDiscard(ctx).V(2).Info("Allocated", "addresses", describe(got))
	}
}

// unhandle takes back the status Berth wrote on a Service that is not (or
// no longer) Berth's, then releases what it held and records what its
// status shows as someone else's. Status first: an address is offered to
// a waiting Service only once this one no longer shows it.
func (c *Controller) unhandle(ctx context.Context, svc *corev1.Service) error {
	key := config.Key(svc)
	if err := c.clearStatus(ctx, svc); err != nil {
		return err
	}
	held, wake := c.ledger.Release(key)
	if len(held) > 0 {
		c.recorder.Eventf(svc, corev1.EventTypeNormal, eventReleased, "Released %s: the Service is no longer a LoadBalancer handled by Berth", describe(held))
	}
	// Also when the event handler did it already: it skips Services still
	// recorded as Berth's.
	c.ledger.SyncForeign(key)
	c.wake(wake)
	return nil
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

// whyLost explains the loss of addresses: the cluster's use of one, when
// that is the cause, else the usual causes.
func whyLost(cfg *config.Config, lost []netip.Addr) string {
	if why := clusterUse(cfg, lost); why != "" {
		return why[2 : len(why)-1]
	}
	return "removed from its pool, reserved, or held by an older Service"
}

// clusterUse says, as " (...)", which of addrs the cluster uses now; ""
// if none.
func clusterUse(cfg *config.Config, addrs []netip.Addr) string {
	for _, a := range addrs {
		if why, used := cfg.Cluster().Forbidden(a); used {
			return fmt.Sprintf(" (%s %s now, and Berth does not announce addresses the cluster uses)", a, why)
		}
	}
	return ""
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
