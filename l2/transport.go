package l2

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Limits on the membership port's TCP streams, which anyone who can reach
// the port can open. Memberlist reads a whole encrypted stream into memory
// before it can authenticate it, and trusts the stream's own length field
// up to 20 MiB, with no limit on concurrent streams: a few connections
// streaming garbage would make the speaker allocate gigabytes. Berth's
// streams are memberlist's joins and push/pull state exchanges: the node
// list (about 100 bytes a node; Berth adds no state of its own), so
// maxStreamBytes is room for thousands of nodes. Heartbeats travel over UDP
// and are not affected. memberlist's TCPTimeout (see memberlistConfig)
// bounds how long a stream holds its slot.
const (
	maxStreamBytes = 1 << 20
	maxStreams     = 8
)

// errStreamTooLong ends a stream that tried to send more than
// maxStreamBytes.
var errStreamTooLong = errors.New("membership stream longer than the limit")

// boundedTransport is memberlist's NetTransport with bounded inbound
// streams: at most maxStreams at a time (more are closed at once) and
// maxBytes read from each. Outgoing streams, which this node opens to
// members, are not limited.
type boundedTransport struct {
	*memberlist.NetTransport
	streams  chan net.Conn
	slots    chan struct{}
	maxBytes int64
	stop     chan struct{}
	stopOnce sync.Once
	// refused counts the streams closed for want of a slot, truncated
	// those cut at maxBytes.
	refused, truncated atomic.Uint64
	// local is the source address of outgoing streams: the bind address,
	// nil when bound to all addresses.
	local *net.TCPAddr
}

// newBoundedTransport listens where c says and forwards inbound streams
// within the limits.
func newBoundedTransport(c *memberlist.Config, maxStreams int, maxBytes int64) (*boundedTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{c.BindAddr},
		BindPort:  c.BindPort,
		Logger:    c.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("listening for members: %w", err)
	}
	t := &boundedTransport{
		NetTransport: nt,
		streams:      make(chan net.Conn),
		slots:        make(chan struct{}, maxStreams),
		maxBytes:     maxBytes,
		stop:         make(chan struct{}),
	}
	if ip := net.ParseIP(c.BindAddr); ip != nil && !ip.IsUnspecified() {
		t.local = &net.TCPAddr{IP: ip}
	}
	go t.forward()
	return t, nil
}

// DialAddressTimeout implements memberlist.NodeAwareTransport. It opens
// the stream from the bind address (the node's InternalIP), as the UDP
// messages leave from it: the kernel's choice of source, by route, may be
// another address of the node, one its peers' membership chain
// (nodeport.Forwarder.Members) does not know and drops.
func (t *boundedTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if t.local != nil {
		d.LocalAddr = t.local
	}
	return d.Dial("tcp", a.Addr)
}

// DialTimeout implements memberlist.Transport (see DialAddressTimeout).
func (t *boundedTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// StreamCh implements memberlist.Transport.
func (t *boundedTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown implements memberlist.Transport.
func (t *boundedTransport) Shutdown() error {
	t.stopOnce.Do(func() { close(t.stop) })
	return t.NetTransport.Shutdown()
}

// forward hands inbound streams to memberlist while a slot is free, and
// closes the others.
func (t *boundedTransport) forward() {
	for {
		var c net.Conn
		select {
		case <-t.stop:
			return
		case c = <-t.NetTransport.StreamCh():
		}
		select {
		case t.slots <- struct{}{}:
		default:
			t.refused.Add(1)
			_ = c.Close()
			continue
		}
		bc := &boundedConn{Conn: c, t: t, left: t.maxBytes}
		select {
		case t.streams <- bc:
		case <-t.stop:
			_ = bc.Close()
			return
		}
	}
}

// boundedConn is an inbound stream that holds a slot until closed and
// reads at most its limit.
type boundedConn struct {
	net.Conn
	t         *boundedTransport
	left      int64
	cut       bool
	closeOnce sync.Once
}

// Read implements net.Conn; past the limit it fails with errStreamTooLong.
func (c *boundedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		if !c.cut {
			c.cut = true
			c.t.truncated.Add(1)
		}
		return 0, errStreamTooLong
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}

// Close implements net.Conn and frees the slot.
func (c *boundedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { <-c.t.slots })
	return err
}
