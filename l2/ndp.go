package l2

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// allNodes is where unsolicited Neighbor Advertisements go (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// ndpConn is the IPv6 linkConn: an ICMPv6 socket bound to the interface's
// link-local address, filtered to Neighbor Solicitations.
type ndpConn struct {
	c   *ndp.Conn
	mac net.HardwareAddr
}

func dialNDP(ifi *net.Interface) (*ndpConn, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("opening NDP socket on %s: %w", ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("filtering NDP socket on %s: %w", ifi.Name, err)
	}
	return &ndpConn{c: c, mac: ifi.HardwareAddr}, nil
}

// nsSource is what an NDP reply needs to know about the solicitation.
type nsSource struct {
	ip netip.Addr
}

func (c *ndpConn) Read() (request, error) {
	for {
		m, _, src, err := c.c.ReadFrom()
		if err != nil {
			return request{}, fmt.Errorf("reading NDP: %w", err)
		}
		ns, ok := m.(*ndp.NeighborSolicitation)
		if !ok {
			continue
		}
		req := request{Target: ns.TargetAddress, raw: nsSource{ip: src}}
		for _, o := range ns.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Source {
				req.SenderMAC = lla.Addr
			}
		}
		return req, nil
	}
}

func (c *ndpConn) advertisement(target netip.Addr, solicited bool) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: c.mac}},
	}
}

func (c *ndpConn) Reply(req request) error {
	src, ok := req.raw.(nsSource)
	if !ok {
		return fmt.Errorf("replying to NDP: not a solicitation: %T", req.raw)
	}
	// A solicitation from :: is duplicate address detection: the answer
	// goes to all nodes and is not "solicited" (RFC 4861 7.2.4).
	dst, solicited := src.ip, true
	if !dst.IsValid() || dst.IsUnspecified() {
		dst, solicited = allNodes, false
	}
	if err := c.c.WriteTo(c.advertisement(req.Target, solicited), nil, dst); err != nil {
		return fmt.Errorf("replying to NDP for %v: %w", req.Target, err)
	}
	return nil
}

// Announce sends an unsolicited Neighbor Advertisement with the override
// flag to all nodes, which makes neighbours replace a cached MAC.
func (c *ndpConn) Announce(addr netip.Addr) error {
	if err := c.c.WriteTo(c.advertisement(addr, false), nil, allNodes); err != nil {
		return fmt.Errorf("sending unsolicited NA for %v: %w", addr, err)
	}
	return nil
}

func (c *ndpConn) JoinGroup(g netip.Addr) error {
	if err := c.c.JoinGroup(g); err != nil {
		return fmt.Errorf("joining %v: %w", g, err)
	}
	return nil
}

func (c *ndpConn) LeaveGroup(g netip.Addr) error {
	if err := c.c.LeaveGroup(g); err != nil {
		return fmt.Errorf("leaving %v: %w", g, err)
	}
	return nil
}

func (c *ndpConn) Close() error {
	if err := c.c.Close(); err != nil {
		return fmt.Errorf("closing NDP socket: %w", err)
	}
	return nil
}
