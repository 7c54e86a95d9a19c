package nodeport

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
)

// element is one element of a port or node map or of a drain set.
type element struct {
	set  string
	addr netip.Addr // the key's address
	// Port maps: the rest of the key, and the NodePort.
	proto    Protocol
	port     uint16
	nodePort uint16
	// Node maps: the node IP.
	nodeIP netip.Addr
}

// portElement, nodeElement and drainElement return the elements of the
// port and node maps and the drain sets.
func portElement(k key, nodePort uint16) element {
	return element{set: familyOf(k.addr).portMap, addr: k.addr, proto: k.proto, port: k.port, nodePort: nodePort}
}

func nodeElement(addr, nodeIP netip.Addr) element {
	return element{set: familyOf(addr).nodeMap, addr: addr, nodeIP: nodeIP}
}

func drainElement(a netip.Addr) element {
	return element{set: familyOf(a).drainSet, addr: a}
}

func (e element) isPort() bool  { return e.set == portMap4 || e.set == portMap6 }
func (e element) isNode() bool  { return e.set == nodeMap4 || e.set == nodeMap6 }
func (e element) isDrain() bool { return e.set == drainSet4 || e.set == drainSet6 }

// String spells the element as nft lists it, key and value: a drain set
// is typed by raw payload, so nft spells its elements as integers.
func (e element) String() string {
	switch {
	case e.isPort():
		proto, _ := e.proto.nftName()
		return fmt.Sprintf("%s . %s . %d : %d", e.addr, proto, e.port, e.nodePort)
	case e.isNode():
		return e.addr.String() + " : " + e.nodeIP.String()
	}
	return "0x" + hex.EncodeToString(e.addr.AsSlice())
}

// keyString spells the element's key alone, as for a delete.
func (e element) keyString() string {
	switch {
	case e.isPort():
		proto, _ := e.proto.nftName()
		return fmt.Sprintf("%s . %s . %d", e.addr, proto, e.port)
	case e.isNode():
		return e.addr.String()
	}
	return e.String()
}

// encode returns the bytes the kernel stores: the key, and the value of a
// map element.
//
// A concatenated key is its fields in order, each padded with zeros to a
// multiple of four bytes (one 32-bit register each), as nft lays it out:
// port4's "198.51.100.1 . tcp . 80" is c6 33 64 01 | 06 00 00 00 | 00 50 00
// 00, port6's key is 24 bytes. Ports are in network byte order; the value
// of a port map is the bare two-byte port, that of a node map the address.
func (e element) encode() (k, v []byte) {
	k = e.addr.AsSlice()
	switch {
	case e.isPort():
		num, _ := e.proto.number()
		k = append(k, num, 0, 0, 0)
		k = binary.BigEndian.AppendUint16(k, e.port)
		k = append(k, 0, 0)
		v = binary.BigEndian.AppendUint16(nil, e.nodePort)
	case e.isNode():
		v = e.nodeIP.AsSlice()
	}
	return k, v
}

// decodeElement is the inverse of encode, for the elements of set.
func decodeElement(set string, k, v []byte) (element, error) {
	e := element{set: set}
	bad := func() (element, error) {
		return element{}, fmt.Errorf("unexpected element %x : %x of %s", k, v, set)
	}
	size := 4
	if set == portMap6 || set == nodeMap6 || set == drainSet6 {
		size = 16
	}
	if len(k) < size {
		return bad()
	}
	e.addr, _ = netip.AddrFromSlice(k[:size])
	switch {
	case e.isPort():
		if len(k) != size+8 || len(v) != 2 {
			return bad()
		}
		var ok bool
		if e.proto, ok = protocolFromNumber(k[size]); !ok {
			return bad()
		}
		e.port = binary.BigEndian.Uint16(k[size+4:])
		e.nodePort = binary.BigEndian.Uint16(v)
	case e.isNode():
		if len(k) != size || len(v) != size {
			return bad()
		}
		e.nodeIP, _ = netip.AddrFromSlice(v)
	case e.isDrain():
		if len(k) != size || len(v) != 0 {
			return bad()
		}
	default:
		return bad()
	}
	return e, nil
}

// protocolFromNumber is the inverse of Protocol.number.
func protocolFromNumber(n byte) (Protocol, bool) {
	for _, p := range []Protocol{TCP, UDP, SCTP} {
		if num, _ := p.number(); num == n {
			return p, true
		}
	}
	return "", false
}
