package bgp

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
)

// AnnounceLinkLocal sends one Router Advertisement on ifname, from the
// node's link-local address, with a router lifetime of 0 (RFC 4861: the
// node is no default router, and hosts that hear it change nothing). It is
// how a router configured for BGP unnumbered (FRR's "neighbor IF
// interface") learns an interface peer's address: it peers with the
// source of the Router Advertisements it receives on the interface, as it
// sends its own for us to find it. The caller repeats it.
func AnnounceLinkLocal(ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifname, err)
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("interface %s: open NDP socket: %w", ifname, err)
	}
	defer c.Close()
	ra := &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  0,
	}
	if len(ifi.HardwareAddr) > 0 {
		ra.Options = append(ra.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr})
	}
	if err := c.WriteTo(ra, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("interface %s: send Router Advertisement: %w", ifname, err)
	}
	return nil
}
