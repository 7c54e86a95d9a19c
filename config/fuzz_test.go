package config_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// FuzzRequestAnnotations feeds arbitrary text into the three annotations,
// one of their aliases (MetalLB's, Cilium's, kube-vip's; alias picks which)
// and spec.loadBalancerIP. Request must not panic; an error must be a
// *config.RequestError with a known Reason and a message; a success must
// satisfy what the allocator expects of a validated request.
func FuzzRequestAnnotations(f *testing.F) {
	seeds := []struct {
		pool, addrs, key, lbip string
		shape                  uint8
		aliasValue             string
		alias                  uint8
	}{
		{"", "", "", "", 0, "", 0},
		{"default-v4", "198.51.100.10", "k", "", 0b0001_1100, "", 0},
		{" team-a , nope", "203.0.113.130", " k ", "203.0.113.130", 0b0011_1101, "", 0},
		{",", "198.51.100.10,2001:db8:100::10", "", "2001:DB8:100::10", 0b0000_1010, "", 0},
		{"retiring", "192.0.2.130", "", "", 0b0100_0101, "", 0},
		{"broken", "fe80::1%eth0", "", "::ffff:198.51.100.1", 0b0000_1111, "", 0},
		{"", "198.51.100.0/24,,", "", "198.51.100.1", 0b0000_1000, "", 0},
		{"gold", "192.0.2.1,192.0.2.2", "", "", 0b1000_1110, "", 0},
		{"", "", "", "", 0, "198.51.100.10", 1},
		{"", "198.51.100.10", "", "", 0b0000_1010, "2001:DB8:100::10, 198.51.100.10", 2},
		{"default-v4", "", "", "", 0, "default-v6", 5},
		{"", "", "k", "", 0, " k", 7},
		{"", "", "k", "", 0, "other", 9},
	}
	for _, s := range seeds {
		f.Add(s.pool, s.addrs, s.key, s.lbip, s.shape, s.aliasValue, s.alias)
	}
	aliases := slices.Concat(config.AddressAliases, config.PoolAliases, config.SharingKeyAliases)
	pools := standardPools()
	cfg := config.For(pools)
	reasons := []string{
		v1alpha1.ReasonInvalidRequest, v1alpha1.ReasonNoMatchingPool, v1alpha1.ReasonRequestedAddressUnavailable,
	}
	policies := []corev1.IPFamilyPolicy{"", single, prefer, require}
	famSets := [][]corev1.IPFamily{{v4}, {v6}, {v4, v6}, {v6, v4}}

	// shape picks the rest of the Service: bits 0-1 the family policy,
	// bits 2-3 the families, bits 4 and 5 whether an empty berth.dev/pool
	// or berth.dev/addresses is present (absent and empty differ), bit 6
	// namespace team-a with an address of the terminating pool in its
	// status, bit 7 the label tier=gold.
	// alias 0 sets none; alias n sets aliases[(n-1) % len(aliases)].
	f.Fuzz(func(t *testing.T, pool, addrs, key, lbip string, shape uint8, aliasValue string, alias uint8) {
		opts := []svcOpt{
			families(policies[shape&3], famSets[(shape>>2)&3]...),
			lbIP(lbip),
		}
		if shape&(1<<4) != 0 || pool != "" {
			opts = append(opts, annotate(v1alpha1.AnnotationPool, pool))
		}
		if shape&(1<<5) != 0 || addrs != "" {
			opts = append(opts, annotate(v1alpha1.AnnotationAddresses, addrs))
		}
		opts = append(opts, annotate(v1alpha1.AnnotationSharingKey, key))
		if shape&(1<<6) != 0 {
			opts = append(opts, inNamespace("team-a"), ingressIPs("192.0.2.130"))
		}
		if shape&(1<<7) != 0 {
			opts = append(opts, withLabels("tier", "gold"))
		}
		if alias != 0 {
			opts = append(opts, annotate(aliases[int(alias-1)%len(aliases)], aliasValue))
		}
		svc := service(opts...)

		req, err := cfg.Request(svc, labels.Set{"tenant": "yes"})
		if err != nil {
			var re *config.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is a %T, want *config.RequestError", err, err)
			}
			if !slices.Contains(reasons, re.Reason) || re.Msg == "" {
				t.Fatalf("RequestError{Reason: %q, Msg: %q}: want a known reason and a message", re.Reason, re.Msg)
			}
			return
		}
		checkRequest(t, pools, svc, req)
	})
}

// checkRequest checks what a successful Request promises the allocator.
func checkRequest(t *testing.T, pools []*v1alpha1.BerthIPPool, svc *corev1.Service, req allocator.Request) {
	t.Helper()
	if req.Service != config.Key(svc) || req.Namespace != svc.Namespace {
		t.Fatalf("identity %q in %q, want %q in %q", req.Service, req.Namespace, config.Key(svc), svc.Namespace)
	}
	if len(req.Families) == 0 || len(req.Families) > 2 {
		t.Fatalf("Families = %v", req.Families)
	}
	if len(req.Pools) == 0 {
		t.Fatalf("no pools and no error")
	}
	if req.SharingKey != strings.TrimSpace(svc.Annotations[v1alpha1.AnnotationSharingKey]) {
		t.Fatalf("SharingKey = %q", req.SharingKey)
	}
	seen := map[allocator.Family]bool{}
	for _, a := range req.Requested {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("requested address %v is not plain", a)
		}
		f := allocator.IPv6
		if a.Is4() {
			f = allocator.IPv4
		}
		if seen[f] || !slices.Contains(req.Families, f) {
			t.Fatalf("requested %v with families %v", req.Requested, req.Families)
		}
		seen[f] = true
		if !slices.ContainsFunc(req.Pools, func(n string) bool { return poolContains(pools, n, a) }) {
			t.Fatalf("requested %v lies in none of the offered pools %v", a, req.Pools)
		}
	}
}

// poolContains reads the pools' CIDRs without the config package, to check
// it independently.
func poolContains(pools []*v1alpha1.BerthIPPool, name string, a netip.Addr) bool {
	for _, p := range pools {
		if p.Name != name {
			continue
		}
		for _, e := range p.Spec.Addresses {
			if pfx, err := netip.ParsePrefix(string(e)); err == nil && pfx.Contains(a) {
				return true
			}
		}
	}
	return false
}
