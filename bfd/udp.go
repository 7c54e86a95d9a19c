package bfd

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The UDP ports of BFD Control packets.
const (
	SingleHopPort = 3784 // RFC 5881
	MultihopPort  = 4784 // RFC 5883
)

// The source port range of RFC 5881 §4 (and RFC 5883).
const (
	minSourcePort = 49152
	maxSourcePort = 65535
)

// ttlMax is the TTL (hop limit) every BFD packet is sent with; single-hop
// packets must arrive with it (RFC 5881 §5), so that they cannot come from
// further than the link.
const ttlMax = 255

// UDP is the Transport over UDP of the process's network namespace.
type UDP struct {
	deliver func(Received)

	mu        sync.Mutex
	listeners map[listenerKey]net.PacketConn
	closed    bool
	wg        sync.WaitGroup
}

type listenerKey struct{ v6, multihop bool }

// NewUDP returns a UDP transport; it listens on a port only once a session
// needs it.
func NewUDP() *UDP {
	return &UDP{listeners: map[listenerKey]net.PacketConn{}}
}

var _ Transport = (*UDP)(nil)

// Receive implements Transport.
func (u *UDP) Receive(deliver func(Received)) { u.deliver = deliver }

// Open implements Transport: a socket from local (or the address the route
// to peer uses) and a source port of the dynamic range, connected to the
// peer's BFD port, sending with TTL 255.
func (u *UDP) Open(local, peer netip.Addr, multihop bool) (Sender, netip.Addr, error) {
	if err := u.listen(peer.Is6() && !peer.Is4In6(), multihop); err != nil {
		return nil, netip.Addr{}, err
	}
	port := uint16(SingleHopPort)
	if multihop {
		port = MultihopPort
	}
	raddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, port))
	if !local.IsValid() {
		// Connecting a UDP socket sends nothing; it asks the kernel for
		// the route's source address.
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return nil, netip.Addr{}, fmt.Errorf("route to %v: %w", peer, err)
		}
		local = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}
	var lastErr error
	for range 64 {
		sport := uint16(minSourcePort + mrand.IntN(maxSourcePort-minSourcePort+1))
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, sport)), raddr)
		if err != nil {
			lastErr = err
			continue // most likely the port is taken
		}
		if err := setTTL(c, peer); err != nil {
			c.Close()
			return nil, netip.Addr{}, err
		}
		return udpSender{c}, local, nil
	}
	return nil, netip.Addr{}, fmt.Errorf("no free source port from %v: %w", local, lastErr)
}

func setTTL(c *net.UDPConn, peer netip.Addr) error {
	if peer.Is4() || peer.Is4In6() {
		if err := ipv4.NewConn(c).SetTTL(ttlMax); err != nil {
			return fmt.Errorf("set TTL: %w", err)
		}
		return nil
	}
	if err := ipv6.NewConn(c).SetHopLimit(ttlMax); err != nil {
		return fmt.Errorf("set hop limit: %w", err)
	}
	return nil
}

type udpSender struct{ c *net.UDPConn }

func (s udpSender) Send(b []byte) error {
	_, err := s.c.Write(b)
	return err
}

func (s udpSender) Close() error { return s.c.Close() }

// listen opens the receiving socket of a family and kind, once.
func (u *UDP) listen(v6, multihop bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return errors.New("transport closed")
	}
	k := listenerKey{v6, multihop}
	if _, ok := u.listeners[k]; ok {
		return nil
	}
	port := SingleHopPort
	if multihop {
		port = MultihopPort
	}
	network, addr := "udp4", fmt.Sprintf("0.0.0.0:%d", port)
	if v6 {
		network, addr = "udp6", fmt.Sprintf("[::]:%d", port)
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	read, err := newReader(c, v6)
	if err != nil {
		c.Close()
		return err
	}
	u.listeners[k] = c
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.serve(read, multihop)
	}()
	return nil
}

// reader reads one packet with the TTL (hop limit) it arrived with and its
// destination address.
type reader func(b []byte) (n, ttl int, from, to netip.Addr, err error)

func newReader(c net.PacketConn, v6 bool) (reader, error) {
	if v6 {
		p := ipv6.NewPacketConn(c)
		if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true); err != nil {
			return nil, fmt.Errorf("ask for hop limits: %w", err)
		}
		return func(b []byte) (int, int, netip.Addr, netip.Addr, error) {
			n, cm, src, err := p.ReadFrom(b)
			if err != nil || cm == nil {
				return n, 0, netip.Addr{}, netip.Addr{}, err
			}
			to, _ := netip.AddrFromSlice(cm.Dst)
			from := udpAddr(src)
			if to.IsLinkLocalUnicast() {
				// A link-local session's local address is zoned, like
				// the source; the destination comes without a zone.
				to = to.WithZone(from.Zone())
			}
			return n, cm.HopLimit, from, to.Unmap(), nil
		}, nil
	}
	p := ipv4.NewPacketConn(c)
	if err := p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst, true); err != nil {
		return nil, fmt.Errorf("ask for TTLs: %w", err)
	}
	return func(b []byte) (int, int, netip.Addr, netip.Addr, error) {
		n, cm, src, err := p.ReadFrom(b)
		if err != nil || cm == nil {
			return n, 0, netip.Addr{}, netip.Addr{}, err
		}
		to, _ := netip.AddrFromSlice(cm.Dst)
		return n, cm.TTL, udpAddr(src), to.Unmap(), nil
	}, nil
}

func udpAddr(a net.Addr) netip.Addr {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// serve reads packets until the socket is closed; single-hop packets that
// did not arrive with TTL 255 are dropped (RFC 5881 §5).
func (u *UDP) serve(read reader, multihop bool) {
	buf := make([]byte, 1500)
	for {
		n, ttl, from, to, err := read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || !from.IsValid() || (!multihop && ttl != ttlMax) {
			continue
		}
		u.deliver(Received{Data: buf[:n], From: from, To: to, Multihop: multihop})
	}
}

// Close implements Transport: it closes the receiving sockets.
func (u *UDP) Close() error {
	u.mu.Lock()
	u.closed = true
	var errs []error
	for _, c := range u.listeners {
		errs = append(errs, c.Close())
	}
	u.mu.Unlock()
	u.wg.Wait()
	return errors.Join(errs...)
}
