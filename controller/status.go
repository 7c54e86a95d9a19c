package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/config"
)

// FieldManager is the server-side apply field manager of every write the
// controller makes.
const FieldManager = "berth-controller"

// writer is everything the controller writes to the API server. Each call is
// one request; the controller decides beforehand whether it is needed.
type writer interface {
	applyServiceStatus(ctx context.Context, svc *corev1ac.ServiceApplyConfiguration) error
	clearServiceStatus(ctx context.Context, namespace, name string) error
	applyPoolStatus(ctx context.Context, pool *berthac.BerthIPPoolApplyConfiguration) error
	setPoolFinalizer(ctx context.Context, pool *v1alpha1.BerthIPPool, present bool) error
	applyBGPAdvertisementStatus(ctx context.Context, adv *berthac.BerthBGPAdvertisementApplyConfiguration) error
	applyL2AdvertisementStatus(ctx context.Context, adv *berthac.BerthL2AdvertisementApplyConfiguration) error
	applyBGPPeerStatus(ctx context.Context, peer *berthac.BerthBGPPeerApplyConfiguration) error
}

type apiWriter struct {
	kube  kubernetes.Interface
	berth versioned.Interface
}

var applyOpts = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}

func (w *apiWriter) applyServiceStatus(ctx context.Context, svc *corev1ac.ServiceApplyConfiguration) error {
	_, err := w.kube.CoreV1().Services(*svc.Namespace).ApplyStatus(ctx, svc, applyOpts)
	if err != nil {
		return fmt.Errorf("apply service status: %w", err)
	}
	return nil
}

func (w *apiWriter) clearServiceStatus(ctx context.Context, namespace, name string) error {
	// Applying an empty status gives up every status field Berth owned.
	ac := corev1ac.Service(name, namespace).WithStatus(corev1ac.ServiceStatus())
	if _, err := w.kube.CoreV1().Services(namespace).ApplyStatus(ctx, ac, applyOpts); err != nil {
		return fmt.Errorf("clear service status: %w", err)
	}
	return nil
}

func (w *apiWriter) applyPoolStatus(ctx context.Context, pool *berthac.BerthIPPoolApplyConfiguration) error {
	if _, err := w.berth.BerthV1alpha1().BerthIPPools().ApplyStatus(ctx, pool, applyOpts); err != nil {
		return fmt.Errorf("apply pool status: %w", err)
	}
	return nil
}

func (w *apiWriter) applyBGPAdvertisementStatus(ctx context.Context, adv *berthac.BerthBGPAdvertisementApplyConfiguration) error {
	if _, err := w.berth.BerthV1alpha1().BerthBGPAdvertisements().ApplyStatus(ctx, adv, applyOpts); err != nil {
		return fmt.Errorf("apply BGP advertisement status: %w", err)
	}
	return nil
}

func (w *apiWriter) applyL2AdvertisementStatus(ctx context.Context, adv *berthac.BerthL2AdvertisementApplyConfiguration) error {
	if _, err := w.berth.BerthV1alpha1().BerthL2Advertisements().ApplyStatus(ctx, adv, applyOpts); err != nil {
		return fmt.Errorf("apply L2 advertisement status: %w", err)
	}
	return nil
}

func (w *apiWriter) applyBGPPeerStatus(ctx context.Context, peer *berthac.BerthBGPPeerApplyConfiguration) error {
	_, err := w.berth.BerthV1alpha1().BerthBGPPeers().ApplyStatus(ctx, peer, applyOpts)
	if apierrors.IsNotFound(err) {
		return nil // gone, and its status with it
	}
	if err != nil {
		return fmt.Errorf("apply BGP peer status: %w", err)
	}
	return nil
}

func (w *apiWriter) setPoolFinalizer(ctx context.Context, pool *v1alpha1.BerthIPPool, present bool) error {
	p := pool.DeepCopy()
	var fins []string
	for _, f := range p.Finalizers {
		if f != v1alpha1.PoolFinalizer {
			fins = append(fins, f)
		}
	}
	if present {
		fins = append(fins, v1alpha1.PoolFinalizer)
	}
	p.Finalizers = fins
	// Update carries the resourceVersion, so a concurrent change to the
	// finalizers by someone else makes this fail and retry, never clobber.
	if _, err := w.berth.BerthV1alpha1().BerthIPPools().Update(ctx, p, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("update pool finalizers: %w", err)
	}
	return nil
}

// writeStatus applies the Service's ingress and condition when they differ
// from what the Service has. It reports whether it wrote.
func (c *Controller) writeStatus(ctx context.Context, svc *corev1.Service, got []allocator.Assignment, cfg *config.Config, cond metav1.Condition) (bool, error) {
	ingress := cfg.Ingress(got)
	old := findCondition(svc)
	if old != nil && old.Status == cond.Status {
		cond.LastTransitionTime = old.LastTransitionTime
	}
	adv, oldAdv := c.advertisedCondition(svc, got), meta.FindStatusCondition(svc.Status.Conditions, v1alpha1.ServiceConditionAdvertised)
	if adv != nil && oldAdv != nil && oldAdv.Status == adv.Status {
		adv.LastTransitionTime = oldAdv.LastTransitionTime
	}
	key := config.Key(svc)
	digest := statusDigest(ingress, cond)
	if adv != nil {
		digest += fmt.Sprintf("|%s|%s|%s", adv.Status, adv.Reason, adv.Message)
	}
	if w, ok := c.written.Load(key); ok && w.(lastWrite).basedOn == svc.ResourceVersion {
		// The cache has not seen our last write yet, so the Service on the
		// server shows what we wrote, not what the cache shows: skip only
		// a write of the same again (a wasted request and a duplicate
		// Event). Comparing with the stale cache instead could skip the
		// write that takes an address off this Service while another is
		// given it.
		if w.(lastWrite).digest == digest {
			return false, nil
		}
	} else if old != nil && old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message &&
		old.ObservedGeneration == cond.ObservedGeneration && ingressEqual(svc.Status.LoadBalancer.Ingress, ingress) &&
		sameCondition(adv, oldAdv) {
		return false, nil
	}

	lb := corev1ac.LoadBalancerStatus()
	for _, ing := range ingress {
		lb.WithIngress(corev1ac.LoadBalancerIngress().WithIP(ing.IP).WithIPMode(*ing.IPMode))
	}
	status := corev1ac.ServiceStatus().WithLoadBalancer(lb).WithConditions(conditionApply(cond))
	if adv != nil {
		status.WithConditions(conditionApply(*adv))
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithStatus(status)
	if err := c.writer.applyServiceStatus(ctx, ac); err != nil {
		return false, err
	}
	c.written.Store(key, lastWrite{basedOn: svc.ResourceVersion, digest: digest})
	c.metrics.statusWrites.Inc()
	return true, nil
}

// clearStatus gives up every status field Berth wrote on a Service it no
// longer handles: when the cache shows Berth's condition, and also when it
// does not show a write of Berth's yet, which the server has.
func (c *Controller) clearStatus(ctx context.Context, svc *corev1.Service) error {
	key := config.Key(svc)
	const cleared = "cleared"
	w, wrote := c.written.Load(key)
	switch {
	case wrote && w.(lastWrite).digest == cleared && (w.(lastWrite).basedOn == svc.ResourceVersion || findCondition(svc) == nil):
		return nil // cleared already, and the cache shows nothing newer of ours
	case !wrote && findCondition(svc) == nil:
		return nil // nothing of ours on it
	}
	if err := c.writer.clearServiceStatus(ctx, svc.Namespace, svc.Name); err != nil {
		return err
	}
	c.written.Store(key, lastWrite{basedOn: svc.ResourceVersion, digest: cleared})
	return nil
}

// lastWrite remembers the controller's last status write of a Service: the
// resourceVersion it was based on and what it wrote.
type lastWrite struct {
	basedOn string
	digest  string
}

func statusDigest(ingress []corev1.LoadBalancerIngress, cond metav1.Condition) string {
	var b strings.Builder
	for _, ing := range ingress {
		fmt.Fprintf(&b, "%s/%s,", ing.IP, *ing.IPMode)
	}
	fmt.Fprintf(&b, "|%s|%s|%s|%d", cond.Status, cond.Reason, cond.Message, cond.ObservedGeneration)
	return b.String()
}

func conditionApply(c metav1.Condition) *metav1ac.ConditionApplyConfiguration {
	return metav1ac.Condition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).WithMessage(c.Message).
		WithObservedGeneration(c.ObservedGeneration).WithLastTransitionTime(c.LastTransitionTime)
}

func metaCondition(svc *corev1.Service, ok bool, reason, msg string) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{
		Type:               v1alpha1.ServiceConditionAddressAllocated,
		Status:             status,
		Reason:             reason,
		Message:            truncate(msg, 32768),
		ObservedGeneration: svc.Generation,
		LastTransitionTime: metav1.Now(),
	}
}

func findCondition(svc *corev1.Service) *metav1.Condition {
	for i := range svc.Status.Conditions {
		if svc.Status.Conditions[i].Type == v1alpha1.ServiceConditionAddressAllocated {
			return &svc.Status.Conditions[i]
		}
	}
	return nil
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].IP != b[i].IP || a[i].Hostname != "" || len(a[i].Ports) > 0 {
			return false
		}
		if (a[i].IPMode == nil) != (b[i].IPMode == nil) || (a[i].IPMode != nil && *a[i].IPMode != *b[i].IPMode) {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
