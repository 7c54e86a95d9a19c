package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/api/v1alpha1"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions/api/v1alpha1"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// Keys of advertisements in the pool queue: what the schema cannot check
// about them (pools and peers that do not exist, an aggregation length
// that would announce more than a pool holds) depends on the pools, so the
// pool worker checks them too.
const (
	bgpAdvPrefix = "berthbgpadvertisement/"
	l2AdvPrefix  = "berthl2advertisement/"
)

// ConditionValid is the type of the condition the controller keeps on
// BerthBGPAdvertisements and BerthL2Advertisements.
const ConditionValid = "Valid"

// advertisements holds the listers of the advertisement watch.
type advertisements struct {
	bgp   berthlisters.BerthBGPAdvertisementLister
	l2    berthlisters.BerthL2AdvertisementLister
	peers berthlisters.BerthBGPPeerLister
}

// WatchAdvertisements makes the controller check BerthBGPAdvertisements and
// BerthL2Advertisements against the pools and peers and report the result as
// their Valid condition, once, centrally: the speakers act on the same
// rules but only record Events, since many nodes would otherwise race on
// one condition. Call it before the informers start.
func (c *Controller) WatchAdvertisements(bgpInf berthinformers.BerthBGPAdvertisementInformer, l2Inf berthinformers.BerthL2AdvertisementInformer, peerInf berthinformers.BerthBGPPeerInformer) error {
	c.advs = &advertisements{bgp: bgpInf.Lister(), l2: l2Inf.Lister(), peers: peerInf.Lister()}
	handler := func(prefix string) cache.ResourceEventHandler {
		queue := func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.poolQueue.Add(prefix + key)
			}
		}
		// A change of an advertisement's spec changes the Services'
		// Advertised conditions; its status does not.
		return cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { queue(obj); c.enqueueHandled() },
			UpdateFunc: func(old, obj any) {
				queue(obj)
				if o, n := old.(metav1.Object), obj.(metav1.Object); o.GetGeneration() != n.GetGeneration() {
					c.enqueueHandled()
				}
			},
			DeleteFunc: func(any) { c.enqueueHandled() },
		}
	}
	if _, err := bgpInf.Informer().AddEventHandler(handler(bgpAdvPrefix)); err != nil {
		return fmt.Errorf("watch BGP advertisements: %w", err)
	}
	if _, err := l2Inf.Informer().AddEventHandler(handler(l2AdvPrefix)); err != nil {
		return fmt.Errorf("watch L2 advertisements: %w", err)
	}
	// A peer appearing or going changes which advertisements name a
	// missing one.
	if _, err := peerInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.enqueueAdvertisements() },
		DeleteFunc: func(any) { c.enqueueAdvertisements() },
	}); err != nil {
		return fmt.Errorf("watch BGP peers: %w", err)
	}
	c.synced = append(c.synced, bgpInf.Informer().HasSynced, l2Inf.Informer().HasSynced, peerInf.Informer().HasSynced)
	return nil
}

func (c *Controller) enqueueAdvertisements() {
	if c.advs == nil {
		return
	}
	if list, err := c.advs.bgp.List(labels.Everything()); err == nil {
		for _, a := range list {
			c.poolQueue.Add(bgpAdvPrefix + a.Name)
		}
	}
	if list, err := c.advs.l2.List(labels.Everything()); err == nil {
		for _, a := range list {
			c.poolQueue.Add(l2AdvPrefix + a.Name)
		}
	}
}

// syncAdvertisement checks one advertisement and writes its Valid condition
// when it changed.
func (c *Controller) syncAdvertisement(ctx context.Context, key string) error {
	cfg := c.ledger.Config()
	var (
		problems   []string
		generation int64
		conds      []metav1.Condition
		kind, name string
	)
	switch {
	case strings.HasPrefix(key, bgpAdvPrefix):
		name, kind = strings.TrimPrefix(key, bgpAdvPrefix), "BerthBGPAdvertisement"
		adv, err := c.advs.bgp.Get(name)
		if apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		generation, conds = adv.Generation, adv.Status.Conditions
		problems = c.checkSelector(cfg, &adv.Spec.AdvertisementSelector)
		problems = append(problems, c.checkPeers(adv.Spec.Peers)...)
		problems = append(problems, checkAggregation(cfg, c.selectedPools(cfg, &adv.Spec.AdvertisementSelector), adv.Spec.AggregationLength, adv.Spec.AggregationLengthV6)...)
	default:
		name, kind = strings.TrimPrefix(key, l2AdvPrefix), "BerthL2Advertisement"
		adv, err := c.advs.l2.Get(name)
		if apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		generation, conds = adv.Generation, adv.Status.Conditions
		problems = c.checkSelector(cfg, &adv.Spec.AdvertisementSelector)
	}
	want := metav1.Condition{Type: ConditionValid, Status: metav1.ConditionTrue, Reason: "Valid",
		Message: "the advertisement matches existing pools and peers", ObservedGeneration: generation, LastTransitionTime: metav1.Now()}
	if len(problems) > 0 {
		want.Status, want.Reason, want.Message = metav1.ConditionFalse, "Invalid", strings.Join(problems, "; ")
	}
	old := meta.FindStatusCondition(conds, ConditionValid)
	if old != nil && old.Status == want.Status && old.Reason == want.Reason && old.Message == want.Message && old.ObservedGeneration == want.ObservedGeneration {
		return nil
	}
	if old != nil && old.Status == want.Status {
		want.LastTransitionTime = old.LastTransitionTime
	}
	cond := metav1ac.Condition().WithType(want.Type).WithStatus(want.Status).WithReason(want.Reason).
		WithMessage(want.Message).WithObservedGeneration(want.ObservedGeneration).WithLastTransitionTime(want.LastTransitionTime)
	status := berthac.AdvertisementStatus().WithConditions(cond)
	if kind == "BerthBGPAdvertisement" {
		return c.writer.applyBGPAdvertisementStatus(ctx, berthac.BerthBGPAdvertisement(name).WithStatus(status))
	}
	return c.writer.applyL2AdvertisementStatus(ctx, berthac.BerthL2Advertisement(name).WithStatus(status))
}

// checkSelector reports pool names that do not exist.
func (c *Controller) checkSelector(cfg *config.Config, sel *v1alpha1.AdvertisementSelector) []string {
	var out []string
	for _, n := range sel.IPPools {
		if _, ok := cfg.Pool(n); !ok {
			out = append(out, fmt.Sprintf("pool %q does not exist", n))
		}
	}
	for _, s := range []*metav1.LabelSelector{sel.IPPoolSelector, sel.ServiceSelector, sel.NodeSelector} {
		if s == nil {
			continue
		}
		if _, err := metav1.LabelSelectorAsSelector(s); err != nil {
			out = append(out, fmt.Sprintf("invalid selector: %v", err))
		}
	}
	return out
}

func (c *Controller) checkPeers(names []string) []string {
	var out []string
	for _, n := range names {
		if _, err := c.advs.peers.Get(n); apierrors.IsNotFound(err) {
			out = append(out, fmt.Sprintf("BerthBGPPeer %q does not exist", n))
		}
	}
	return out
}

// selectedPools returns the names of the pools an advertisement selects.
func (c *Controller) selectedPools(cfg *config.Config, sel *v1alpha1.AdvertisementSelector) []string {
	var out []string
	for _, n := range cfg.Names() {
		if len(sel.IPPools) > 0 && !slices.Contains(sel.IPPools, n) {
			continue
		}
		if sel.IPPoolSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(sel.IPPoolSelector)
			pool, perr := c.pools.Get(n)
			if err != nil || perr != nil || !s.Matches(labels.Set(pool.Labels)) {
				continue
			}
		}
		out = append(out, n)
	}
	return out
}

// checkAggregation reports pools whose addresses an aggregation length
// would overshoot: the aggregate of each end of each range must lie inside
// the pool, or the router would be told about addresses Berth does not own.
func checkAggregation(cfg *config.Config, pools []string, v4, v6 *int32) []string {
	var out []string
	for _, n := range pools {
		p, _ := cfg.Pool(n)
		for _, r := range p.Alloc.Ranges {
			l := v6
			if r.First.Is4() {
				l = v4
			}
			if l == nil || int(*l) >= r.First.BitLen() {
				continue
			}
			for _, a := range []netip.Addr{r.First, r.Last} {
				if agg := netip.PrefixFrom(a, int(*l)).Masked(); !p.Covers(agg) {
					out = append(out, fmt.Sprintf("aggregation length %d makes %s, which is larger than pool %q's addresses", *l, agg, n))
					break
				}
			}
		}
	}
	return out
}
