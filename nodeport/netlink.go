package nodeport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds one batch or read when the context has no earlier
// deadline: the kernel answers in milliseconds, and a Forwarder holds its
// lock meanwhile.
const netlinkTimeout = 10 * time.Second

// nlConn is a netfilter netlink socket, opened on first use in a network
// namespace (or the caller's) and kept open between requests: when such a
// socket is closed, the kernel first waits for the deferred release of
// whatever its batches deleted, which takes an RCU grace period (7 to 15
// ms on the test machine). A socket per batch would add that to every
// change that deletes an element; a lasting one lets the release happen in
// the background. After an error the socket is closed, since replies to
// the failed request may still be queued on it.
type nlConn struct {
	netns  string
	conn   *netlink.Conn
	sndbuf int // the largest datagram the socket takes; 0 until read
}

// dial opens the socket.
func (c *nlConn) dial() error {
	cfg := &netlink.Config{}
	if c.netns != "" {
		ns, err := os.Open(c.netns)
		if err != nil {
			return fmt.Errorf("opening network namespace: %w", err)
		}
		defer ns.Close()
		cfg.NetNS = int(ns.Fd())
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return fmt.Errorf("opening netlink socket: %w", err)
	}
	// Acknowledgements and errors without a copy of the request, which
	// could be a large element list. (Not extended acknowledgements as
	// well: github.com/mdlayher/netlink cannot parse them from capped
	// errors.)
	if err := conn.SetOption(netlink.CapAcknowledge, true); err != nil {
		_ = conn.Close()
		return fmt.Errorf("setting netlink socket option: %w", err)
	}
	c.conn, c.sndbuf = conn, 0
	return nil
}

// do runs fn on the open socket, with a deadline from ctx, and drops the
// socket if fn fails.
func (c *nlConn) do(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(netlinkTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := c.conn.SetDeadline(deadline)
	if err == nil {
		err = fn()
	}
	if err != nil {
		c.close()
	}
	return err
}

func (c *nlConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
	c.conn = nil
}

// batch sends msgs as one nfnetlink batch, which the kernel applies
// atomically, and waits for the acknowledgement of each. The kernel takes
// a batch only whole, in one datagram, so the socket's send buffer is
// raised to the batch's size first if need be (which CAP_NET_ADMIN
// allows beyond the system's limit, as nft does).
func (c *nlConn) batch(ctx context.Context, msgs []netlink.Message) error {
	return c.do(ctx, func() error {
		size := 2 * nlmsgLen(4)
		for _, m := range msgs {
			size += nlmsgLen(len(m.Data))
		}
		if err := c.growSendBuffer(size); err != nil {
			return err
		}
		all := make([]netlink.Message, 0, len(msgs)+2)
		all = append(all, batchMsg(unix.NFNL_MSG_BATCH_BEGIN))
		all = append(all, msgs...)
		all = append(all, batchMsg(unix.NFNL_MSG_BATCH_END))
		if _, err := c.conn.SendMessages(all); err != nil {
			return fmt.Errorf("sending netlink batch: %w", err)
		}
		// Every message asked for an acknowledgement; the kernel sends
		// them, or the errors, once it has processed the whole batch.
		for acks := 0; acks < len(msgs); {
			replies, err := c.conn.Receive()
			if err != nil {
				return err
			}
			for _, r := range replies {
				if r.Header.Type == netlink.Error {
					acks++
				}
			}
		}
		return nil
	})
}

// growSendBuffer makes the socket's send buffer take a datagram of size
// bytes.
func (c *nlConn) growSendBuffer(size int) error {
	if c.sndbuf == 0 {
		n, err := c.conn.WriteBuffer()
		if err != nil {
			return fmt.Errorf("reading the netlink socket's send buffer size: %w", err)
		}
		// The kernel takes a datagram up to the buffer size less 32 bytes.
		c.sndbuf = n - 32
	}
	if size <= c.sndbuf {
		return nil
	}
	raw, err := c.conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		if errors.Is(serr, unix.EPERM) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
		}
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("raising the netlink socket's send buffer to %d bytes: %w", size, err)
	}
	// The kernel doubles the size asked for (SO_SNDBUF is capped by
	// net.core.wmem_max without CAP_NET_ADMIN; the send then fails).
	c.sndbuf = 2*size - 32
	return nil
}

// dump sends a dump request and returns the replies.
func (c *nlConn) dump(ctx context.Context, m netlink.Message) ([]netlink.Message, error) {
	m.Header.Flags = netlink.Request | netlink.Dump
	var replies []netlink.Message
	err := c.do(ctx, func() error {
		var err error
		replies, err = c.conn.Execute(m)
		return err
	})
	return replies, err
}

func batchMsg(typ uint16) netlink.Message {
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}}
}

// nlmsgLen is the length of a netlink message with n bytes of data.
func nlmsgLen(n int) int { return unix.NLMSG_HDRLEN + (n+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1) }

// attrs returns a decoder of the attributes of an nf_tables message.
func attrs(m netlink.Message) (*netlink.AttributeDecoder, error) {
	if len(m.Data) < 4 {
		return nil, fmt.Errorf("short nf_tables message of type %#x", m.Header.Type)
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	return ad, nil
}

// parseChain reads a chain of a chain dump, and its name if it belongs to
// table.
func parseChain(m netlink.Message, table string) (string, ListedChain, error) {
	var c ListedChain
	var t, name string
	ad, err := attrs(m)
	if err != nil {
		return "", c, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_CHAIN_TABLE:
			t = ad.String()
		case unix.NFTA_CHAIN_NAME:
			name = ad.String()
		case unix.NFTA_CHAIN_TYPE:
			c.Type = ad.String()
		case unix.NFTA_CHAIN_HOOK:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case unix.NFTA_HOOK_HOOKNUM:
						c.Hook = nad.Uint32()
					case unix.NFTA_HOOK_PRIORITY:
						c.Priority = int32(nad.Uint32())
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return "", c, fmt.Errorf("reading a chain: %w", err)
	}
	if t != table {
		return "", c, nil
	}
	return name, c, nil
}

// parseRule reads the chain and comment of a rule of a rule dump.
func parseRule(m netlink.Message, table string) (chain, comment string, err error) {
	ad, err := attrs(m)
	if err != nil {
		return "", "", err
	}
	var t string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_TABLE:
			t = ad.String()
		case unix.NFTA_RULE_CHAIN:
			chain = ad.String()
		case unix.NFTA_RULE_USERDATA:
			comment = udataString(ad.Bytes(), udataComment)
		}
	}
	if err := ad.Err(); err != nil {
		return "", "", fmt.Errorf("reading a rule: %w", err)
	}
	if t != table {
		return "", "", nil
	}
	return chain, comment, nil
}

// udataString returns the string TLV of type typ in user data u, or "".
func udataString(u []byte, typ byte) string {
	for len(u) >= 2 && len(u) >= 2+int(u[1]) {
		v := u[2 : 2+int(u[1])]
		if u[0] == typ {
			return strings.TrimRight(string(v), "\x00")
		}
		u = u[2+len(v):]
	}
	return ""
}

// parseElements appends the elements of a set element dump message to
// elems.
func parseElements(m netlink.Message, elems []ListedElement) ([]ListedElement, error) {
	ad, err := attrs(m)
	if err != nil {
		return elems, err
	}
	value := func(ad *netlink.AttributeDecoder) (v []byte) {
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			for nad.Next() {
				if nad.Type() == unix.NFTA_DATA_VALUE {
					v = nad.Bytes()
				}
			}
			return nil
		})
		return v
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				var e ListedElement
				list.Nested(func(elem *netlink.AttributeDecoder) error {
					for elem.Next() {
						switch elem.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							e.Key = value(elem)
						case unix.NFTA_SET_ELEM_DATA:
							e.Value = value(elem)
						case nftaSetElemKeyEnd:
							e.KeyEnd = value(elem)
						}
					}
					return nil
				})
				elems = append(elems, e)
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return elems, fmt.Errorf("reading set elements: %w", err)
	}
	return elems, nil
}
