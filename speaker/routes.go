package speaker

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the host routes the speaker installs for draining
// (0xbe, "be" for Berth; `ip route show proto 190`), so that it finds and
// removes exactly its own, including those a crashed speaker left.
const RouteProtocol = 0xbe

// drainRouter is what the speaker needs of the node's routing table.
type drainRouter interface {
	// Set makes the main table hold exactly these host routes, each
	// address via a node IP, among the routes of RouteProtocol.
	Set(routes map[netip.Addr]netip.Addr) error
}

// netlinkRoutes is the drainRouter of the node's main routing table.
type netlinkRoutes struct {
	// applied is what the table holds, when synced.
	applied map[netip.Addr]netip.Addr
	synced  bool
}

// Set reads the table only when what it wants changed or an earlier Set
// failed (and on the first call, which removes what a previous run left).
func (r *netlinkRoutes) Set(want map[netip.Addr]netip.Addr) error {
	if r.synced && maps.Equal(r.applied, want) {
		return nil
	}
	r.synced = false
	have, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list drain routes: %w", err)
	}
	var errs []error
	for _, rt := range have {
		if rt.Dst != nil {
			a, _ := netip.AddrFromSlice(rt.Dst.IP)
			via, _ := netip.AddrFromSlice(rt.Gw)
			if want[a.Unmap()] == via.Unmap() && via.IsValid() && isHost(rt.Dst) {
				continue
			}
		}
		if err := netlink.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete drain route %s: %w", rt.Dst, err))
		}
	}
	for a, via := range want {
		bits := a.BitLen()
		rt := &netlink.Route{
			Dst:      &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)},
			Gw:       via.AsSlice(),
			Protocol: RouteProtocol,
			Table:    unix.RT_TABLE_MAIN,
		}
		if err := netlink.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", a, via, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.applied, r.synced = maps.Clone(want), true
	return nil
}

func isHost(n *net.IPNet) bool {
	ones, bits := n.Mask.Size()
	return ones == bits
}
