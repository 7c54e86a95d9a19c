package allocator

import (
	"net/netip"
	"testing"
)

func TestCatchAllPoolsSkipSpecialPurposeAddresses(t *testing.T) {
	v6, v4 := pool("all6", "::/0"), pool("all4", "0.0.0.0/0")
	runScenarios(t, []scenario{{
		name: "::/0 never hands out :: or ::1",
		steps: []step{
			setPools(v6),
			assign(families(req("default/a", "all6"), false, IPv6), got("all6", "::2")),
			fails(families(requested(req("default/b", "all6"), "::"), false, IPv6), ReasonRequestedAddressUnavailable,
				":: is a special-purpose address (in ::/128: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			fails(families(requested(req("default/b", "all6"), "::1"), false, IPv6), ReasonRequestedAddressUnavailable,
				"::1 is a special-purpose address (in ::1/128: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			fails(families(requested(req("default/b", "all6"), "fe80::1"), false, IPv6), ReasonRequestedAddressUnavailable,
				"fe80::1 is a special-purpose address (in fe80::/10: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			fails(families(requested(req("default/b", "all6"), "ff02::1"), false, IPv6), ReasonRequestedAddressUnavailable,
				"ff02::1 is a special-purpose address (in ff00::/8: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			// A Service whose status shows :: (from an older release) loses it.
			assign(families(current(req("default/c", "all6"), "::"), false, IPv6), got("all6", "::3")),
			invalid(),
		},
	}, {
		name: "0.0.0.0/0 starts at 1.0.0.0 and skips loopback, link-local, multicast, broadcast",
		steps: []step{
			setPools(v4),
			assign(req("default/a", "all4"), got("all4", "1.0.0.0")),
			fails(requested(req("default/b", "all4"), "0.0.0.0"), ReasonRequestedAddressUnavailable,
				"0.0.0.0 is a special-purpose address (in 0.0.0.0/8: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			fails(requested(req("default/b", "all4"), "127.0.0.1"), ReasonRequestedAddressUnavailable,
				"127.0.0.1 is a special-purpose address (in 127.0.0.0/8: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			fails(requested(req("default/b", "all4"), "169.254.169.254"), ReasonRequestedAddressUnavailable,
				"169.254.169.254 is a special-purpose address (in 169.254.0.0/16: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			fails(requested(req("default/b", "all4"), "239.1.1.1"), ReasonRequestedAddressUnavailable,
				"239.1.1.1 is a special-purpose address (in 224.0.0.0/4: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			fails(requested(req("default/b", "all4"), "255.255.255.255"), ReasonRequestedAddressUnavailable,
				"255.255.255.255 is a special-purpose address (in 255.255.255.255/32: unspecified, loopback, link-local, multicast or broadcast), which no pool hands out"),
			assign(requested(req("default/b", "all4"), "126.255.255.255"), got("all4", "126.255.255.255")),
		},
	}, {
		name: "a pool inside a special block hands out nothing",
		steps: []step{
			setPools(pool("lo", "127.0.0.0/30"), pool("ll6", "fe80::/126")),
			fails(req("default/a", "lo"), ReasonPoolExhausted, "pools [lo] have no free IPv4 address"),
			fails(families(req("default/a", "ll6"), false, IPv6), ReasonPoolExhausted, "pools [ll6] have no free IPv6 address"),
		},
	}})
}

// TestCatchAllNeverUnspecified hands out many addresses from both catch-all
// pools, after freeing the lowest ones, and checks none is special-purpose.
func TestCatchAllNeverUnspecified(t *testing.T) {
	a := New()
	a.SetPools([]Pool{pool("all6", "::/0"), pool("all4", "0.0.0.0/0")})
	for i := range 300 {
		for _, f := range []Family{IPv4, IPv6} {
			svc := sprintf("default/s%d-%v", i, f)
			got, err := a.Assign(families(req(svc, "all4", "all6"), false, f))
			if err != nil {
				t.Fatalf("assign %s: %v", svc, err)
			}
			if b, bad := SpecialPurpose(got[0].Addr); bad || got[0].Addr.IsUnspecified() {
				t.Fatalf("%s got %s, inside %s", svc, got[0].Addr, b)
			}
			if i%3 == 0 {
				a.Release(svc)
			}
		}
	}
	checkInvariants(t, a)
	if _, ok := SpecialPurpose(netip.MustParseAddr("2001:db8::1")); ok {
		t.Fatal("2001:db8::1 is not special-purpose")
	}
}
