package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// neighbor is an entry of an interface's IPv6 neighbor table, as far as
// LinkLocalNeighbor cares.
type neighbor struct {
	addr netip.Addr
	// usable is false for an entry the kernel gave up on (FAILED) or
	// is still resolving (INCOMPLETE): no neighbor answers at it.
	usable bool
}

// pickLinkLocal chooses an interface peer's address among the entries of
// ifname's neighbor table: the one usable IPv6 link-local unicast address
// that is not one of the node's own (own), zoned with ifname. This is
// GoBGP's rule for unnumbered neighbors (GetIPv6LinkLocalNeighborAddress),
// except that an entry still being resolved does not count.
func pickLinkLocal(ifname string, neighs []neighbor, own []netip.Addr) (netip.Addr, error) {
	var found []netip.Addr
	for _, n := range neighs {
		a := n.addr.WithZone("")
		if !n.usable || !a.Is6() || !a.IsLinkLocalUnicast() || slices.ContainsFunc(own, func(o netip.Addr) bool { return o.WithZone("") == a }) {
			continue
		}
		if !slices.Contains(found, a) {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return netip.Addr{}, fmt.Errorf("interface %s has no IPv6 link-local neighbor yet (the router's Router Advertisements, or any packet from it, put it in the neighbor table)", ifname)
	case 1:
		return found[0].WithZone(ifname), nil
	}
	slices.SortFunc(found, netip.Addr.Compare)
	s := make([]string, len(found))
	for i, a := range found {
		s[i] = a.String()
	}
	return netip.Addr{}, fmt.Errorf("interface %s has %d IPv6 link-local neighbors (%s): an interface peer needs a point-to-point link", ifname, len(found), strings.Join(s, ", "))
}
