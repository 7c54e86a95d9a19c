package config_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// FuzzPools feeds arbitrary address and reserved entries (comma
// separated), a selector expression and a prefix to check coverage with.
// For must not panic and must keep its promises: a pool with problems or a
// terminating one drains, a valid pool's reserved entries lie inside its
// addresses, PoolFor finds a pool for every address that some pool's range
// holds (and only then), and Covers agrees with PoolFor at the prefix's
// ends.
func FuzzPools(f *testing.F) {
	f.Add("198.51.100.0/24", "198.51.100.1", "tier", "In", "gold", "198.51.100.0/25", false)
	f.Add("2001:db8::/64,2001:db8:1::1-2001:db8:1::9", "", "", "", "", "2001:db8::/120", true)
	f.Add("192.0.2.10-192.0.2.1", "192.0.2.200", "bad key!", "Exists", "", "192.0.2.0/32", false)
	f.Add("::/0", "::", "a", "NotIn", "", "::/0", false)
	f.Add("0.0.0.0/0,", ",", "", "", "", "0.0.0.0/0", false)
	f.Add("203.0.113.0/33", "203.0.113.7/32", "x", "Gt", "1", "203.0.113.4/30", true)

	f.Fuzz(func(t *testing.T, addrs, res, key, op, value, prefix string, term bool) {
		p := &v1alpha1.BerthIPPool{
			ObjectMeta: metav1.ObjectMeta{Name: "fuzz"},
			Spec: v1alpha1.BerthIPPoolSpec{
				Addresses: entries(addrs),
				Reserved:  entries(res),
			},
		}
		if term {
			p.DeletionTimestamp = &metav1.Time{}
		}
		if key != "" || op != "" {
			p.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{NamespaceSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: key, Operator: metav1.LabelSelectorOperator(op), Values: strings.Split(value, ","),
				}},
			}}
		}
		// A second, fixed pool sorts after "fuzz" so that PoolFor's
		// name order is exercised too.
		other := ippool("other", []string{"198.51.100.128/25"})
		cfg := config.For([]*v1alpha1.BerthIPPool{p, other})

		pool, ok := cfg.Pool("fuzz")
		if !ok {
			t.Fatal("pool fuzz is missing from the configuration")
		}
		ok, why := pool.Allows("default", labels.Set{"tier": "gold"}, labels.Set{key: value})
		if !ok && why == "" {
			t.Error("Allows refused without a reason")
		}
		for _, a := range cfg.AllocatorPools() {
			if a.Name != "fuzz" {
				continue
			}
			if want := term || len(pool.Problems) > 0; a.Draining != want {
				t.Errorf("Draining = %v with problems %q and terminating %v", a.Draining, pool.Problems, term)
			}
		}
		if len(pool.Problems) == 0 {
			for _, r := range pool.Alloc.Reserved {
				if !inRanges(r.First, pool.Alloc.Ranges) || !inRanges(r.Last, pool.Alloc.Ranges) {
					t.Errorf("valid pool reserves %v-%v outside its addresses %v", r.First, r.Last, pool.Alloc.Ranges)
				}
			}
		}
		var probes []netip.Addr
		for _, r := range pool.Alloc.Ranges {
			probes = append(probes, r.First, r.Last, r.First.Prev(), r.Last.Next())
		}
		pfx, perr := netip.ParsePrefix(prefix)
		if perr == nil {
			probes = append(probes, pfx.Masked().Addr())
		}
		for _, a := range probes {
			if !a.IsValid() {
				continue
			}
			name, found := cfg.PoolFor(a)
			inFuzz := inRanges(a, pool.Alloc.Ranges)
			inOther := inRanges(a, []allocator.Range{mustRange("198.51.100.128/25")})
			switch {
			case inFuzz && name != "fuzz":
				t.Errorf("PoolFor(%v) = %q, %v; want fuzz, which holds it and sorts first", a, name, found)
			case !inFuzz && inOther && name != "other":
				t.Errorf("PoolFor(%v) = %q, %v; want other", a, name, found)
			case !inFuzz && !inOther && found:
				t.Errorf("PoolFor(%v) = %q although no pool holds it", a, name)
			}
		}
		if perr == nil && pool.Covers(pfx) {
			first := pfx.Masked().Addr()
			if !inRanges(first, pool.Alloc.Ranges) {
				t.Errorf("Covers(%v) but its first address %v is in no range of %v", pfx, first, pool.Alloc.Ranges)
			}
		}
	})
}

// FuzzHoldingRequest feeds arbitrary status addresses and a sharing key
// into HoldingRequest and KeepRequest. Neither may panic; both hold at
// most one address per family, only addresses that a pool contains, and
// hand out nothing new; the left-out addresses are exactly the in-pool
// ones of a family already held.
func FuzzHoldingRequest(f *testing.F) {
	f.Add("198.51.100.10,2001:db8:100::10", "k", uint8(0))
	f.Add("198.51.100.10,198.51.100.11,192.0.2.130", "", uint8(1))
	f.Add("fe80::1%eth0,::ffff:198.51.100.9, 203.0.113.130", " key ", uint8(2))
	f.Add(",,notanip,2001:db8:100::1/64", "", uint8(3))

	cfg := config.For(standardPools())
	f.Fuzz(func(t *testing.T, status, key string, shape uint8) {
		opts := []svcOpt{ingressIPs(strings.Split(status, ",")...), annotate(v1alpha1.AnnotationSharingKey, key)}
		if shape&1 != 0 {
			opts = append(opts, inNamespace("team-a"))
		}
		if shape&2 != 0 {
			opts = append(opts, withLabels("tier", "gold"))
		}
		svc := service(opts...)

		hold, extra := cfg.HoldingRequest(svc, "other/impl")
		checkStatusRequest(t, "HoldingRequest", cfg, svc, hold)
		if !slices.Equal(hold.Requested, hold.Current) {
			t.Errorf("HoldingRequest requests %v but holds %v", hold.Requested, hold.Current)
		}
		for _, a := range extra {
			if !slices.ContainsFunc(hold.Current, func(c netip.Addr) bool { return c.Is4() == a.Is4() }) {
				t.Errorf("HoldingRequest left out %v although its family is not held (%v)", a, hold.Current)
			}
		}
		keep := cfg.KeepRequest(svc, labels.Set{"tenant": "yes"})
		checkStatusRequest(t, "KeepRequest", cfg, svc, keep)
		if !keep.KeepOnly {
			t.Error("KeepRequest may hand out new addresses (KeepOnly is false)")
		}
	})
}

func checkStatusRequest(t *testing.T, what string, cfg *config.Config, svc *corev1.Service, req allocator.Request) {
	t.Helper()
	status := config.CurrentAddresses(svc)
	v4, v6 := 0, 0
	for _, a := range req.Current {
		if a.Is4() {
			v4++
		} else {
			v6++
		}
		if !slices.Contains(status, a) {
			t.Errorf("%s holds %v, which is not in the status %v", what, a, status)
		}
		if _, ok := cfg.PoolFor(a); !ok {
			t.Errorf("%s holds %v, which no pool contains", what, a)
		}
	}
	if v4 > 1 || v6 > 1 {
		t.Errorf("%s holds more than one address of a family: %v", what, req.Current)
	}
	if len(req.Families) != len(req.Current) {
		t.Errorf("%s: families %v do not match addresses %v", what, req.Families, req.Current)
	}
}

func entries(s string) []v1alpha1.AddressRange {
	if s == "" {
		return nil
	}
	var out []v1alpha1.AddressRange
	for _, e := range strings.Split(s, ",") {
		out = append(out, v1alpha1.AddressRange(e))
	}
	return out
}

func inRanges(a netip.Addr, rs []allocator.Range) bool {
	for _, r := range rs {
		if r.First.BitLen() == a.BitLen() && r.First.Compare(a) <= 0 && r.Last.Compare(a) >= 0 {
			return true
		}
	}
	return false
}

func mustRange(s string) allocator.Range {
	r, err := allocator.ParseRange(s)
	if err != nil {
		panic(err)
	}
	return r
}
