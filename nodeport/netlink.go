package nodeport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"

	gnft "github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"sigs.k8s.io/knftables"
)

// netlinkTimeout bounds one element batch when the context has no earlier
// deadline: the kernel answers in well under a millisecond, and a Forwarder
// holds its lock meanwhile.
const netlinkTimeout = 10 * time.Second

// UpdateElements sends ops to the kernel as one nfnetlink batch, without
// running nft or reading anything first. Consecutive operations of one
// kind on one map share a message.
func (n *nftables) UpdateElements(ctx context.Context, ops []ElementOp) error {
	msgs, err := groupOps(ops)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.send(ctx, msgs); err != nil {
		// Drop the socket: acknowledgements of this batch may still be
		// queued on it, and would be taken for the next batch's.
		if n.conn != nil {
			_ = n.conn.CloseLasting()
		}
		n.conn, n.sock = nil, nil
		return fmt.Errorf("sending %d element operations over netlink: %w", len(ops), err)
	}
	return nil
}

// send flushes msgs as one batch on n's socket, opening it if need be.
func (n *nftables) send(ctx context.Context, msgs []elementMsg) error {
	if n.conn == nil {
		if err := n.dial(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(netlinkTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := n.sock.SetDeadline(deadline); err != nil {
		return err
	}
	table := &gnft.Table{Family: gnft.TableFamilyINet, Name: n.table}
	for _, m := range msgs {
		set := &gnft.Set{Table: table, Name: m.set}
		var err error
		if m.delete {
			err = n.conn.SetDeleteElements(set, m.elems)
		} else {
			err = n.conn.SetAddElements(set, m.elems)
		}
		if err != nil {
			return fmt.Errorf("encoding elements of map %s: %w", m.set, err)
		}
	}
	return n.conn.Flush()
}

// dial opens the netlink socket that n keeps between batches, in n.netns if
// set. Keeping it open matters: when a netfilter netlink socket is closed,
// the kernel first waits for the deferred release of whatever the socket's
// batches deleted, which takes an RCU grace period (7 to 15 ms on the test
// machine). A socket per batch would add that to every change that deletes
// an element; a lasting one lets the release happen in the background.
func (n *nftables) dial() error {
	var sock *netlink.Conn
	opts := []gnft.ConnOption{gnft.AsLasting(),
		gnft.WithSockOptions(func(c *netlink.Conn) error { sock = c; return nil })}
	if n.netns != "" {
		ns, err := os.Open(n.netns)
		if err != nil {
			return fmt.Errorf("opening network namespace: %w", err)
		}
		defer ns.Close()
		opts = append(opts, gnft.WithNetNSFd(int(ns.Fd())))
	}
	c, err := gnft.New(opts...)
	if err != nil {
		return fmt.Errorf("opening netlink socket: %w", err)
	}
	if sock == nil {
		_ = c.CloseLasting()
		return errors.New("opening netlink socket: no socket to set deadlines on")
	}
	n.conn, n.sock = c, sock
	return nil
}

// elementMsg is one netlink message of an element batch.
type elementMsg struct {
	delete bool
	set    string
	elems  []gnft.SetElement
}

// maxElemsPerMsg keeps each message's element list well below the 64 KiB
// a netlink attribute can hold (an IPv6 port element takes 48 bytes).
const maxElemsPerMsg = 256

// groupOps encodes ops, keeping their order, into as few messages as that
// order and maxElemsPerMsg allow.
func groupOps(ops []ElementOp) ([]elementMsg, error) {
	var msgs []elementMsg
	for _, op := range ops {
		e, err := encodeElement(op.Element, !op.Delete)
		if err != nil {
			return nil, err
		}
		name := setName(op.Element)
		if l := len(msgs) - 1; l >= 0 && msgs[l].delete == op.Delete && msgs[l].set == name && len(msgs[l].elems) < maxElemsPerMsg {
			msgs[l].elems = append(msgs[l].elems, e)
			continue
		}
		msgs = append(msgs, elementMsg{delete: op.Delete, set: name, elems: []gnft.SetElement{e}})
	}
	return msgs, nil
}

// setName returns the name of the map or set e belongs to.
func setName(e *knftables.Element) string {
	if e.Set != "" {
		return e.Set
	}
	return e.Map
}

// encodeElement turns an element of a port or node map, spelled as for nft,
// into the bytes the kernel stores: the key, and the value if withValue.
//
// A concatenated key is its fields in order, each padded with zeros to a
// multiple of four bytes (one 32-bit register each), as nft lays it out:
// port4's "198.51.100.1 . tcp . 80" is c6 33 64 01 | 06 00 00 00 | 00 50 00
// 00, port6's key is 24 bytes. Ports are in network byte order; the value
// of a port map is the bare two-byte port, that of a node map the address.
func encodeElement(e *knftables.Element, withValue bool) (gnft.SetElement, error) {
	var out gnft.SetElement
	if e.Set == drainSet4 || e.Set == drainSet6 {
		a, err := parseDrainElement(e.Set, e.Key)
		if err != nil || a.Is4() != (e.Set == drainSet4) {
			return out, fmt.Errorf("element %v of set %s: bad address", e.Key, e.Set)
		}
		out.Key = a.AsSlice()
		return out, nil
	}
	bad := func(reason string) error {
		return fmt.Errorf("element %v : %v of map %s: %s", e.Key, e.Value, e.Map, reason)
	}
	var want4 bool
	switch e.Map {
	case portMap4, nodeMap4:
		want4 = true
	case portMap6, nodeMap6:
	default:
		return out, bad("unknown map")
	}
	if len(e.Key) == 0 || (withValue && len(e.Value) != 1) {
		return out, bad("wrong number of fields")
	}
	addr, err := netip.ParseAddr(e.Key[0])
	if err != nil || addr.Is4() != want4 || addr.Zone() != "" {
		return out, bad("bad address")
	}
	out.Key = addr.AsSlice()
	switch e.Map {
	case portMap4, portMap6:
		if len(e.Key) != 3 {
			return out, bad("wrong number of fields")
		}
		p, ok := protocolFromNFT(e.Key[1])
		num, _ := p.number()
		port, err := strconv.ParseUint(e.Key[2], 10, 16)
		if !ok || err != nil {
			return out, bad("bad protocol or port")
		}
		out.Key = append(out.Key, num, 0, 0, 0)
		out.Key = binary.BigEndian.AppendUint16(out.Key, uint16(port))
		out.Key = append(out.Key, 0, 0)
		if withValue {
			nodePort, err := strconv.ParseUint(e.Value[0], 10, 16)
			if err != nil {
				return out, bad("bad node port")
			}
			out.Val = binary.BigEndian.AppendUint16(nil, uint16(nodePort))
		}
	default:
		if len(e.Key) != 1 {
			return out, bad("wrong number of fields")
		}
		if withValue {
			nodeIP, err := netip.ParseAddr(e.Value[0])
			if err != nil || nodeIP.Is4() != want4 || nodeIP.Zone() != "" {
				return out, bad("bad node IP")
			}
			out.Val = nodeIP.AsSlice()
		}
	}
	return out, nil
}
