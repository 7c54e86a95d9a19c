package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// allNodes is where unsolicited Neighbor Advertisements go (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// ndpConn is the IPv6 linkConn: an ICMPv6 socket bound to the interface's
// link-local address, filtered to Neighbor Solicitations and
// Advertisements (the others' announcements).
//
// Advertisements are sent from the target address itself, as they would be
// if the address were assigned to the interface (and as ARP replies carry
// it as sender): RFC 4861 accepts any source, but some tools do not; ndisc6
// drops advertisements whose source is not the target. The address is not
// on the interface, so the socket needs IPV6_FREEBIND (Linux 4.15); without
// it the advertisements come from the link-local address.
type ndpConn struct {
	pc  *ipv6.PacketConn
	ifi net.Interface
	// self is the link-local address the socket is bound to.
	self     netip.Addr
	freebind bool
}

func dialNDP(ifi *net.Interface) (*ndpConn, error) {
	self, err := linkLocal(ifi)
	if err != nil {
		return nil, fmt.Errorf("opening NDP socket on %s: %w", ifi.Name, err)
	}
	freebind := false
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			freebind = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1) == nil
		})
	}}
	c, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", self.WithZone(ifi.Name).String())
	if err != nil {
		return nil, fmt.Errorf("opening NDP socket on %s: %w", ifi.Name, err)
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	// Hop limit 255 on everything sent, as RFC 4861 requires (receivers
	// drop NDP messages with any other).
	for _, set := range []func() error{
		func() error { return pc.SetHopLimit(ndp.HopLimit) },
		func() error { return pc.SetMulticastHopLimit(ndp.HopLimit) },
		func() error { return pc.SetICMPFilter(&f) },
	} {
		if err := set(); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("setting up NDP socket on %s: %w", ifi.Name, err)
		}
	}
	return &ndpConn{pc: pc, ifi: *ifi, self: self, freebind: freebind}, nil
}

// linkLocal returns ifi's first IPv6 link-local address.
func linkLocal(ifi *net.Interface) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, errors.New("no IPv6 link-local address")
}

// nsSource is what an NDP reply needs to know about the solicitation.
type nsSource struct {
	ip netip.Addr
}

func (c *ndpConn) Read() (request, error) {
	b := make([]byte, max(c.ifi.MTU, 1280))
	for {
		n, _, from, err := c.pc.ReadFrom(b)
		if err != nil {
			return request{}, fmt.Errorf("reading NDP: %w", err)
		}
		ipa, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ipa.IP)
		if src == c.self {
			continue // this node's own solicitations
		}
		m, err := ndp.ParseMessage(b[:n])
		if err != nil {
			continue
		}
		if req, ok := ndpRequest(m, src); ok {
			return req, nil
		}
	}
}

// ndpRequest is what an NDP message from src asks of the Responder: a
// Neighbor Solicitation to answer, or an unsolicited, overriding Neighbor
// Advertisement by which another node announces a move. Everything else
// asks nothing.
func ndpRequest(m ndp.Message, src netip.Addr) (request, bool) {
	switch m := m.(type) {
	case *ndp.NeighborSolicitation:
		req := request{Target: m.TargetAddress, raw: nsSource{ip: src}}
		for _, o := range m.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Source {
				req.SenderMAC = lla.Addr
			}
		}
		return req, true
	case *ndp.NeighborAdvertisement:
		if m.Solicited || !m.Override {
			return request{}, false
		}
		req := request{Target: m.TargetAddress, Announce: true}
		for _, o := range m.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				req.SenderMAC = lla.Addr
			}
		}
		return req, true
	}
	return request{}, false
}

func (c *ndpConn) advertisement(target netip.Addr, solicited bool) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: c.ifi.HardwareAddr}},
	}
}

// send writes an advertisement for target to dst, from target if it can.
func (c *ndpConn) send(na *ndp.NeighborAdvertisement, dst netip.Addr) error {
	b, err := ndp.MarshalMessage(na)
	if err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, IfIndex: c.ifi.Index, Src: c.self.AsSlice()}
	if c.freebind {
		cm.Src = na.TargetAddress.AsSlice()
	}
	_, err = c.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: c.ifi.Name})
	return err
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
	if err := c.send(c.advertisement(req.Target, solicited), dst); err != nil {
		return fmt.Errorf("replying to NDP for %v: %w", req.Target, err)
	}
	return nil
}

// Announce sends an unsolicited Neighbor Advertisement with the override
// flag to all nodes, which makes neighbours replace a cached MAC.
func (c *ndpConn) Announce(addr netip.Addr) error {
	if err := c.send(c.advertisement(addr, false), allNodes); err != nil {
		return fmt.Errorf("sending unsolicited NA for %v: %w", addr, err)
	}
	return nil
}

func (c *ndpConn) JoinGroup(g netip.Addr) error {
	if err := c.pc.JoinGroup(&c.ifi, &net.IPAddr{IP: g.AsSlice()}); err != nil {
		return fmt.Errorf("joining %v: %w", g, err)
	}
	return nil
}

func (c *ndpConn) LeaveGroup(g netip.Addr) error {
	if err := c.pc.LeaveGroup(&c.ifi, &net.IPAddr{IP: g.AsSlice()}); err != nil {
		return fmt.Errorf("leaving %v: %w", g, err)
	}
	return nil
}

func (c *ndpConn) Close() error {
	if err := c.pc.Close(); err != nil {
		return fmt.Errorf("closing NDP socket: %w", err)
	}
	return nil
}
