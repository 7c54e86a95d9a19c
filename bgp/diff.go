package bgp

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"
)

// normalize sorts and deduplicates a's communities, so that two
// advertisements that mean the same compare equal.
func normalize(a Advertisement) Advertisement {
	a.Communities = slices.Clone(a.Communities)
	slices.Sort(a.Communities)
	a.Communities = slices.Compact(a.Communities)
	a.LargeCommunities = slices.Clone(a.LargeCommunities)
	slices.SortFunc(a.LargeCommunities, compareLarge)
	a.LargeCommunities = slices.Compact(a.LargeCommunities)
	if a.LocalPref != nil {
		v := *a.LocalPref
		a.LocalPref = &v
	}
	return a
}

func compareLarge(x, y LargeCommunity) int {
	return cmp.Or(cmp.Compare(x.Global, y.Global), cmp.Compare(x.Local1, y.Local1), cmp.Compare(x.Local2, y.Local2))
}

// sameAdvertisement reports whether two normalized advertisements announce
// the same route with the same attributes.
func sameAdvertisement(x, y Advertisement) bool {
	if (x.LocalPref == nil) != (y.LocalPref == nil) || (x.LocalPref != nil && *x.LocalPref != *y.LocalPref) {
		return false
	}
	return x.Prefix == y.Prefix && x.NextHop == y.NextHop &&
		slices.Equal(x.Communities, y.Communities) &&
		slices.Equal(x.LargeCommunities, y.LargeCommunities)
}

// diffAdvertisements returns what turns cur into want: the advertisements
// to announce (new, or changed: announcing replaces the old route, with no
// withdrawal in between) and the prefixes to withdraw. Both are sorted by
// prefix.
func diffAdvertisements(cur, want map[netip.Prefix]Advertisement) (announce []Advertisement, withdraw []netip.Prefix) {
	for p, w := range want {
		if c, ok := cur[p]; !ok || !sameAdvertisement(c, w) {
			announce = append(announce, w)
		}
	}
	for p := range cur {
		if _, ok := want[p]; !ok {
			withdraw = append(withdraw, p)
		}
	}
	slices.SortFunc(announce, func(x, y Advertisement) int { return comparePrefix(x.Prefix, y.Prefix) })
	slices.SortFunc(withdraw, comparePrefix)
	return announce, withdraw
}

func comparePrefix(x, y netip.Prefix) int {
	return cmp.Or(x.Addr().Compare(y.Addr()), cmp.Compare(x.Bits(), y.Bits()))
}

// samePeer reports whether two peers (defaults applied) need no session
// reset to turn one into the other.
func samePeer(x, y Peer) bool {
	if !slices.Equal(x.Families, y.Families) {
		return false
	}
	x.Families, y.Families = nil, nil
	return reflect.DeepEqual(x, y)
}

// diffPeers returns the names of peers to add, to remove, and to reset
// (changed), each sorted.
func diffPeers(cur, want map[string]Peer) (add, remove, reset []string) {
	for n, w := range want {
		c, ok := cur[n]
		switch {
		case !ok:
			add = append(add, n)
		case !samePeer(c, w):
			reset = append(reset, n)
		}
	}
	for n := range cur {
		if _, ok := want[n]; !ok {
			remove = append(remove, n)
		}
	}
	slices.Sort(add)
	slices.Sort(remove)
	slices.Sort(reset)
	return add, remove, reset
}
