package l2

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// arpConn is the IPv4 linkConn: a raw AF_PACKET socket for EtherType ARP.
type arpConn struct {
	c   *arp.Client
	mac net.HardwareAddr
}

func dialARP(ifi *net.Interface) (*arpConn, error) {
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
	}
	return &arpConn{c: c, mac: ifi.HardwareAddr}, nil
}

func (c *arpConn) Read() (request, error) {
	for {
		p, _, err := c.c.Read()
		if err != nil {
			return request{}, fmt.Errorf("reading ARP: %w", err)
		}
		if req, ok := arpRequest(p); ok {
			return req, nil
		}
	}
}

// arpRequest is what an ARP packet asks of the Responder: a request to
// answer, or another node's announcement (a gratuitous ARP, request or
// reply, whose sender and target are both the announced address). Other
// replies ask nothing.
func arpRequest(p *arp.Packet) (request, bool) {
	announce := p.SenderIP == p.TargetIP
	if p.Operation != arp.OperationRequest && !announce {
		return request{}, false
	}
	return request{Target: p.TargetIP, SenderMAC: p.SenderHardwareAddr, Announce: announce, raw: p}, true
}

func (c *arpConn) Reply(req request) error {
	p, ok := req.raw.(*arp.Packet)
	if !ok {
		return fmt.Errorf("replying to ARP: not an ARP request: %T", req.raw)
	}
	if err := c.c.Reply(p, c.mac, req.Target); err != nil {
		return fmt.Errorf("replying to ARP for %v: %w", req.Target, err)
	}
	return nil
}

// Announce broadcasts a gratuitous ARP request (sender and target IP both
// addr). Linux updates an existing neighbour entry from it even with
// arp_accept=0, and the switches learn the new port from its source MAC.
func (c *arpConn) Announce(addr netip.Addr) error {
	p, err := arp.NewPacket(arp.OperationRequest, c.mac, addr, ethernet.Broadcast, addr)
	if err != nil {
		return fmt.Errorf("building gratuitous ARP for %v: %w", addr, err)
	}
	if err := c.c.WriteTo(p, ethernet.Broadcast); err != nil {
		return fmt.Errorf("sending gratuitous ARP for %v: %w", addr, err)
	}
	return nil
}

func (c *arpConn) JoinGroup(netip.Addr) error  { return nil }
func (c *arpConn) LeaveGroup(netip.Addr) error { return nil }

func (c *arpConn) Close() error {
	if err := c.c.Close(); err != nil {
		return fmt.Errorf("closing ARP socket: %w", err)
	}
	return nil
}
