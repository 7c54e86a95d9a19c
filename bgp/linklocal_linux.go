package bgp

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// LinkLocalNeighbor returns the address of an interface peer on ifname
// (see Peer.Interface): the one IPv6 link-local neighbor in the
// interface's neighbor table, zoned with ifname. It fails when the
// interface does not exist, or has no such neighbor or more than one; the
// caller tries again later (the table fills when the router sends Router
// Advertisements, or any packet).
func LinkLocalNeighbor(ifname string) (netip.Addr, error) {
	link, err := netlink.LinkByName(ifname)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return netip.Addr{}, fmt.Errorf("interface %s does not exist on this node", ifname)
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: %w", ifname, err)
	}
	entries, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: list neighbors: %w", ifname, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface %s: list addresses: %w", ifname, err)
	}
	own := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			own = append(own, ip)
		}
	}
	neighs := make([]neighbor, 0, len(entries))
	for _, e := range entries {
		ip, ok := netip.AddrFromSlice(e.IP)
		if !ok {
			continue
		}
		usable := e.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0
		neighs = append(neighs, neighbor{addr: ip, usable: usable})
	}
	return pickLinkLocal(ifname, neighs, own)
}
