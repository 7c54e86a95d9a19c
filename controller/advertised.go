package controller

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// advertisedCondition is the Service's Advertised condition for the
// addresses it got: True when an advertisement applies to every one of
// them, naming them; False naming those none applies to. It is nil when
// the Service has no address or the controller does not watch
// advertisements.
func (c *Controller) advertisedCondition(svc *corev1.Service, got []allocator.Assignment) *metav1.Condition {
	if c.advs == nil || len(got) == 0 {
		return nil
	}
	bgpAdvs, err1 := c.advs.bgp.List(labels.Everything())
	l2Advs, err2 := c.advs.l2.List(labels.Everything())
	if err1 != nil || err2 != nil {
		return nil
	}
	var nsLabels labels.Set
	if ns, err := c.namespaces.Get(svc.Namespace); err == nil {
		nsLabels = config.NamespaceLabels(ns)
	}
	var ok, missing []string
	for _, a := range got {
		var poolLabels labels.Set
		if p, err := c.pools.Get(a.Pool); err == nil {
			poolLabels = p.Labels
		}
		var by []string
		for _, adv := range bgpAdvs {
			if config.AdvertisementAdmits(&adv.Spec.AdvertisementSelector, a.Pool, poolLabels, svc, nsLabels) {
				by = append(by, "BerthBGPAdvertisement "+adv.Name)
			}
		}
		for _, adv := range l2Advs {
			if config.AdvertisementAdmits(&adv.Spec.AdvertisementSelector, a.Pool, poolLabels, svc, nsLabels) {
				by = append(by, "BerthL2Advertisement "+adv.Name)
			}
		}
		if len(by) == 0 {
			missing = append(missing, fmt.Sprintf("%s: no BerthBGPAdvertisement or BerthL2Advertisement selects pool %s", a.Addr, a.Pool))
			continue
		}
		ok = append(ok, fmt.Sprintf("%s: %s", a.Addr, strings.Join(by, ", ")))
	}
	cond := &metav1.Condition{
		Type: v1alpha1.ServiceConditionAdvertised, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAdvertised,
		Message: truncate(strings.Join(ok, "; "), 32768), ObservedGeneration: svc.Generation, LastTransitionTime: metav1.Now(),
	}
	if len(missing) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonNotAdvertised
		cond.Message = truncate(strings.Join(missing, "; "), 32768)
	}
	return cond
}

// sameCondition reports whether a and b say the same, their transition
// times aside; two nils are the same.
func sameCondition(a, b *metav1.Condition) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message && a.ObservedGeneration == b.ObservedGeneration
}

// enqueueHandled queues every Service the controller handles: which
// advertisements apply to them changed.
func (c *Controller) enqueueHandled() {
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if c.handles(s) {
			c.svcQueue.Add(config.Key(s))
		}
	}
}
