package controller

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/ledger"
)

// maxHolders bounds the Services listed in a pool's status.
const maxHolders = 100

func (c *Controller) syncPoolKey(ctx context.Context, key string) error {
	switch {
	case key == rebuildKey:
		c.rebuildPools(ctx)
		return nil
	case key == clusterKey:
		c.rebuildCluster(ctx)
		return nil
	case c.advs != nil && (strings.HasPrefix(key, bgpAdvPrefix) || strings.HasPrefix(key, l2AdvPrefix)):
		return c.syncAdvertisement(ctx, key)
	case key == peerSessionsKey && c.nodeStatuses != nil:
		return c.syncPeerSessions(ctx)
	}
	return c.syncPool(ctx, key)
}

// rebuildPools validates all pools again, hands them to the allocator and
// re-evaluates every Service: pending ones may now fit, and holders of an
// address that a pool edit removed get a new one.
func (c *Controller) rebuildPools(ctx context.Context) {
	c.rebuildMu.Lock()
	defer c.rebuildMu.Unlock()
	pools, err := c.pools.List(labels.Everything())
	if err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "List pools from cache")
		return
	}
	// The informer's initial adds queue rebuilds of what Run already
	// built; re-evaluating every Service for an unchanged set of pool specs
	// would be wasted work.
	fp := poolsFingerprint(pools)
	if fp == c.builtFrom {
		return
	}
	c.builtFrom = fp
	// Foreign addresses a new or grown pool covers are held, then the
	// waiting Services get what the edit freed, oldest first (before the
	// first restore, restore does both).
	wake := c.ledger.SetPools(pools)
	for _, p := range pools {
		c.poolQueue.Add(p.Name)
	}
	c.enqueueAdvertisements()
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "List services from cache")
		return
	}
	c.wake(wake)
	for _, s := range svcs {
		if c.handles(s) {
			c.svcQueue.Add(config.Key(s))
		}
	}
}

// poolsFingerprint identifies the pools' specs and lifecycle: it changes
// whenever a rebuild could decide differently.
func poolsFingerprint(pools []*v1alpha1.BerthIPPool) string {
	parts := make([]string, 0, len(pools))
	for _, p := range pools {
		parts = append(parts, fmt.Sprintf("%s/%s/%d/%v", p.Name, p.UID, p.Generation, p.DeletionTimestamp != nil))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// syncPool keeps a pool's finalizer and status.
func (c *Controller) syncPool(ctx context.Context, name string) error {
	pool, err := c.pools.Get(name)
	if apierrors.IsNotFound(err) {
		c.metrics.forgetPool(name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get pool from cache: %w", err)
	}
	holders, foreign := ledger.HolderNames(c.ledger.Holders(name))
	hasFinalizer := slices.Contains(pool.Finalizers, v1alpha1.PoolFinalizer)
	uninstalling := c.uninstalling()
	switch {
	case uninstalling && hasFinalizer:
		logr.FromContextOrDiscard(ctx).Info("Berth is being uninstalled; removing the pool's finalizer", "pool", name)
		return c.writer.setPoolFinalizer(ctx, pool, false)
	case pool.DeletionTimestamp == nil && !hasFinalizer && !uninstalling:
		return c.writer.setPoolFinalizer(ctx, pool, true)
	case pool.DeletionTimestamp != nil && hasFinalizer && len(holders) == 0:
		logr.FromContextOrDiscard(ctx).Info("Pool no longer in use; letting it go", "pool", name)
		return c.writer.setPoolFinalizer(ctx, pool, false)
	}

	cp, _ := c.ledger.Config().Pool(name)
	stats, _ := c.ledger.Stats(name)
	c.metrics.setPool(name, stats)
	status := poolStatus(pool, cp, stats, holders, foreign)
	if poolStatusEqual(&pool.Status, status) {
		return nil
	}
	if err := c.writer.applyPoolStatus(ctx, poolApply(name, status)); err != nil {
		return err
	}
	c.warnPool(pool, status)
	return nil
}

// warnPool records an Event on the pool when a problem the operator must
// fix appears or changes: an invalid spec (what the API server's rules
// could not catch) or addresses the cluster uses.
func (c *Controller) warnPool(pool *v1alpha1.BerthIPPool, status *v1alpha1.BerthIPPoolStatus) {
	for _, w := range []struct{ cond, reason string }{
		{v1alpha1.PoolConditionReady, "InvalidSpec"},
		{v1alpha1.PoolConditionClusterOverlap, "ClusterAddresses"},
	} {
		now := meta.FindStatusCondition(status.Conditions, w.cond)
		if now == nil || now.Reason != w.reason {
			continue
		}
		if old := meta.FindStatusCondition(pool.Status.Conditions, w.cond); old != nil && old.Reason == now.Reason && old.Message == now.Message {
			continue
		}
		c.recorder.Event(pool, corev1.EventTypeWarning, w.reason, now.Message)
	}
}

// poolStatus computes what the pool's status should say. holders are all
// Services holding addresses of the pool; foreign of them are served by
// another implementation.
func poolStatus(pool *v1alpha1.BerthIPPool, cp *config.Pool, stats allocator.PoolStats, holders []string, foreign int) *v1alpha1.BerthIPPoolStatus {
	st := &v1alpha1.BerthIPPoolStatus{ObservedGeneration: pool.Generation, HolderCount: int32(min(len(holders), 1<<30))}
	st.Holders = holders[:min(len(holders), maxHolders)]
	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		cond := metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: pool.Generation, LastTransitionTime: metav1.Now()}
		if old := meta.FindStatusCondition(pool.Status.Conditions, t); old != nil && old.Status == s {
			cond.LastTransitionTime = old.LastTransitionTime
		}
		st.Conditions = append(st.Conditions, cond)
	}
	switch {
	case cp == nil:
		set(v1alpha1.PoolConditionReady, false, "NotLoaded", "the controller has not loaded this pool yet")
	case len(cp.Problems) > 0:
		set(v1alpha1.PoolConditionReady, false, "InvalidSpec", strings.Join(cp.Problems, "; "))
	case cp.Terminating:
		set(v1alpha1.PoolConditionReady, false, "Deleting", "the pool is being deleted and gives out no new addresses")
	default:
		set(v1alpha1.PoolConditionReady, true, "Valid", "the pool hands out addresses")
	}
	if len(stats.Overlaps) > 0 {
		set(v1alpha1.PoolConditionOverlapping, true, "AddressesOverlap", fmt.Sprintf(
			"some addresses also belong to pools [%s]; each is still handed out at most once", strings.Join(stats.Overlaps, ", ")))
	} else {
		set(v1alpha1.PoolConditionOverlapping, false, "NoOverlap", "no address of this pool belongs to another pool")
	}
	if cp != nil && len(cp.ClusterUse) > 0 {
		set(v1alpha1.PoolConditionClusterOverlap, true, "ClusterAddresses", fmt.Sprintf(
			"the cluster uses some of these addresses (%s); they are never handed out, and a Service holding one is moved off it",
			strings.Join(cp.ClusterUse, "; ")))
	}
	if len(holders) > 0 {
		msg := fmt.Sprintf("%d Services hold addresses of this pool: %s", len(holders), strings.Join(holders[:min(len(holders), 10)], ", "))
		if len(holders) > 10 {
			msg += ", ..."
		}
		if foreign > 0 {
			msg += fmt.Sprintf(" (%d of them served by another implementation, such as berth-ccm)", foreign)
		}
		if pool.DeletionTimestamp != nil {
			msg += "; deletion waits until they release them"
		}
		set(v1alpha1.PoolConditionInUse, true, "ServicesHoldAddresses", msg)
	} else {
		set(v1alpha1.PoolConditionInUse, false, "Unused", "no Service holds an address of this pool")
	}
	var usage []string
	if cp != nil && len(cp.Problems) == 0 {
		st.IPv4 = counts(stats.IPv4)
		st.IPv6 = counts(stats.IPv6)
	}
	if st.IPv4 != nil {
		usage = append(usage, st.IPv4.Used+"/"+st.IPv4.Total)
	}
	if st.IPv6 != nil {
		usage = append(usage, st.IPv6.Used+"/"+st.IPv6.Total)
	}
	if len(usage) == 2 {
		usage[0] += " v4"
		usage[1] += " v6"
	}
	st.Usage = strings.Join(usage, ", ")
	return st
}

func counts(f allocator.FamilyStats) *v1alpha1.AddressCounts {
	if f.Total == nil || (f.Total.Sign() == 0 && (f.Used == nil || f.Used.Sign() == 0)) {
		return nil
	}
	str := func(x *big.Int) string {
		if x == nil {
			return "0"
		}
		return x.String()
	}
	return &v1alpha1.AddressCounts{Total: str(f.Total), Used: str(f.Used), Free: str(f.Free)}
}

func poolStatusEqual(have, want *v1alpha1.BerthIPPoolStatus) bool {
	if have.ObservedGeneration != want.ObservedGeneration || have.Usage != want.Usage ||
		have.HolderCount != want.HolderCount || !slices.Equal(have.Holders, want.Holders) ||
		!countsEqual(have.IPv4, want.IPv4) || !countsEqual(have.IPv6, want.IPv6) ||
		len(have.Conditions) != len(want.Conditions) {
		return false
	}
	for _, w := range want.Conditions {
		h := meta.FindStatusCondition(have.Conditions, w.Type)
		if h == nil || h.Status != w.Status || h.Reason != w.Reason || h.Message != w.Message || h.ObservedGeneration != w.ObservedGeneration {
			return false
		}
	}
	return true
}

func countsEqual(a, b *v1alpha1.AddressCounts) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func poolApply(name string, st *v1alpha1.BerthIPPoolStatus) *berthac.BerthIPPoolApplyConfiguration {
	s := berthac.BerthIPPoolStatus().
		WithObservedGeneration(st.ObservedGeneration).
		WithHolderCount(st.HolderCount).
		WithHolders(st.Holders...)
	if st.Usage != "" {
		s.WithUsage(st.Usage)
	}
	for _, c := range st.Conditions {
		s.WithConditions(metav1ac.Condition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).
			WithMessage(c.Message).WithObservedGeneration(c.ObservedGeneration).WithLastTransitionTime(c.LastTransitionTime))
	}
	if st.IPv4 != nil {
		s.WithIPv4(berthac.AddressCounts().WithTotal(st.IPv4.Total).WithUsed(st.IPv4.Used).WithFree(st.IPv4.Free))
	}
	if st.IPv6 != nil {
		s.WithIPv6(berthac.AddressCounts().WithTotal(st.IPv6.Total).WithUsed(st.IPv6.Used).WithFree(st.IPv6.Free))
	}
	return berthac.BerthIPPool(name).WithStatus(s)
}
