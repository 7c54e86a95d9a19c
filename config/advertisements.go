package config

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/api/v1alpha1"
)

// AdvertisementAdmits reports whether an advertisement's selector applies
// to the Service's address from pool (whose labels are poolLabels),
// leaving out the node selector. The operator's rules come first: the
// pools named or selected, and the namespaces the advertisement admits by
// name or by label (nsLabels are the labels of the Service's namespace;
// nil means unknown, which a namespaceSelector never admits); the
// Service's own labels can only narrow that, so that labelling a Service
// never opts it into an advertisement its namespace may not use. The
// speakers' BGP and layer-2 plans, the controller's Advertised condition
// and berth status all decide with it.
func AdvertisementAdmits(sel *v1alpha1.AdvertisementSelector, pool string, poolLabels labels.Set, svc *corev1.Service, nsLabels labels.Set) bool {
	if len(sel.IPPools) > 0 && !slices.Contains(sel.IPPools, pool) {
		return false
	}
	if len(sel.Namespaces) > 0 && !slices.Contains(sel.Namespaces, svc.Namespace) {
		return false
	}
	if sel.NamespaceSelector != nil && (nsLabels == nil || !selects(sel.NamespaceSelector, nsLabels)) {
		return false
	}
	return selects(sel.IPPoolSelector, poolLabels) && selects(sel.ServiceSelector, svc.Labels)
}

// NamespaceLabels returns a namespace's labels for AdvertisementAdmits:
// never nil for a namespace that exists, nil for nil.
func NamespaceLabels(ns *corev1.Namespace) labels.Set {
	if ns == nil {
		return nil
	}
	out := labels.Set{}
	for k, v := range ns.Labels {
		out[k] = v
	}
	return out
}

// selects treats a nil selector as matching everything and an invalid one
// as matching nothing.
func selects(ls *metav1.LabelSelector, set labels.Set) bool {
	if ls == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	return err == nil && s.Matches(set)
}
