package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// Annotations of other load-balancer implementations that Berth reads as
// aliases of its own, so that a Service written for MetalLB, Cilium LB-IPAM
// or kube-vip keeps its pinned address, pool and sharing after a switch
// without being edited. Berth never writes them.
var (
	// AddressAliases are read like berth.dev/addresses: a comma-separated
	// list of addresses, at most one per family.
	AddressAliases = []string{
		"metallb.universe.tf/loadBalancerIPs",
		"metallb.io/loadBalancerIPs",
		"lbipam.cilium.io/ips",
		"kube-vip.io/loadbalancerIPs",
	}
	// PoolAliases are read like berth.dev/pool. MetalLB's names one
	// IPAddressPool; `berth migrate` gives the converted BerthIPPool the same
	// name, so the annotation keeps its meaning.
	PoolAliases = []string{
		"metallb.universe.tf/address-pool",
		"metallb.io/address-pool",
	}
	// SharingKeyAliases are read like berth.dev/sharing-key.
	SharingKeyAliases = []string{
		"metallb.universe.tf/allow-shared-ip",
		"metallb.io/allow-shared-ip",
		"lbipam.cilium.io/sharing-key",
	}
)

// aliased is the value of a Service annotation read under its Berth name
// and its aliases: which annotation it came from (for messages) and its
// text. present is false when none of them is set.
type aliased struct {
	name    string
	value   string
	present bool
}

// readAliased returns the value of the first of primary and aliases that is
// set on svc. If several are set, they must say the same thing once
// normalized by norm (equal texts always agree); otherwise the error is an
// InvalidRequest naming two annotations that disagree.
func readAliased(svc *corev1.Service, primary string, aliases []string, norm func(string) string) (aliased, error) {
	var got aliased
	for _, name := range append([]string{primary}, aliases...) {
		v, ok := svc.Annotations[name]
		if !ok {
			continue
		}
		if !got.present {
			got = aliased{name: name, value: v, present: true}
			continue
		}
		if v != got.value && norm(v) != norm(got.value) {
			return got, requestErr(v1alpha1.ReasonInvalidRequest,
				"annotations %s=%q and %s=%q disagree; remove one or make them equal", got.name, got.value, name, v)
		}
	}
	return got, nil
}

// sharingKey returns the Service's sharing key from berth.dev/sharing-key
// or its aliases.
func sharingKey(svc *corev1.Service) (string, error) {
	v, err := readAliased(svc, v1alpha1.AnnotationSharingKey, SharingKeyAliases, strings.TrimSpace)
	return strings.TrimSpace(v.value), err
}

// holdingSharingKey is the sharing key to record for addresses a Service
// already holds: the first annotation set, even when its aliases disagree,
// because the address is held whatever the request says and only a key
// compatible with the other holders keeps a shared address together.
func holdingSharingKey(svc *corev1.Service) string {
	v, _ := readAliased(svc, v1alpha1.AnnotationSharingKey, SharingKeyAliases, strings.TrimSpace)
	return strings.TrimSpace(v.value)
}

// normList normalizes a comma-separated list for comparison: entries
// trimmed, empty ones dropped, addresses in their canonical form, sorted.
func normList(v string) string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if a, err := netip.ParseAddr(e); err == nil {
			e = a.String()
		}
		if e != "" {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}
