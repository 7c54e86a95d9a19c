package allocator

import (
	"net/netip"
	"slices"
)

// neverHandedOut are the special-purpose blocks no pool ever hands out,
// whatever its ranges say: the unspecified address ("this network" for
// IPv4), loopback, link-local (169.254.169.254 is the cloud metadata
// service), multicast, the IPv4 limited broadcast and IPv4-mapped IPv6.
// A Service given one of them would capture traffic the node sends to
// itself or to its link, so an explicitly allowed catch-all pool such as
// ::/0 or 0.0.0.0/0 has them carved out. The API server refuses pool
// entries inside them; see api/v1alpha1.
var neverHandedOut = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// SpecialPurpose returns the special-purpose block containing a, if any:
// such an address is never handed out by any pool.
func SpecialPurpose(a netip.Addr) (netip.Prefix, bool) {
	for _, p := range neverHandedOut {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// SpecialPurposeBlocks returns the blocks no pool ever hands out, for
// callers that validate pool specs against them.
func SpecialPurposeBlocks() []netip.Prefix { return slices.Clone(neverHandedOut) }

// specialRuns returns the never-handed-out blocks of family f as runs.
func specialRuns(f Family) []run {
	var out []run
	for _, p := range neverHandedOut {
		if familyOf(p.Addr()) != f {
			continue
		}
		r := prefixRange(p)
		out = append(out, run{u128From(r.First), u128From(r.Last)})
	}
	return out
}
