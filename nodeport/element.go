package nodeport

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// element is one element of a port or node map, a drain set, a source
// range set or a membership set.
type element struct {
	set  string
	addr netip.Addr // the key's address
	// Port maps, restrict and allow sets: the rest of the key; port maps:
	// the NodePort.
	proto    Protocol
	port     uint16
	nodePort uint16
	// Node maps: the node IP.
	nodeIP netip.Addr
	// Allow sets: the first and last client address of a source range.
	from, to netip.Addr
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

// restrictElement and allowElement return the elements of the source range
// sets: a restricted rule's key, and one range of clients allowed to it.
func restrictElement(k key) element {
	return element{set: familyOf(k.addr).restrictSet, addr: k.addr, proto: k.proto, port: k.port}
}

func allowElement(k key, r addrRange) element {
	return element{set: familyOf(k.addr).allowSet, addr: k.addr, proto: k.proto, port: k.port, from: r.from, to: r.to}
}

// memberElement and memberPortElement return the elements of the
// membership sets: a node address, and a protocol and port.
func memberElement(a netip.Addr) element { return element{set: familyOf(a).memberSet, addr: a} }

func memberPortElement(proto Protocol, port uint16) element {
	return element{set: memberPorts, proto: proto, port: port}
}

func (e element) isPort() bool     { return e.set == portMap4 || e.set == portMap6 }
func (e element) isNode() bool     { return e.set == nodeMap4 || e.set == nodeMap6 }
func (e element) isDrain() bool    { return e.set == drainSet4 || e.set == drainSet6 }
func (e element) isRestrict() bool { return e.set == restrictSet4 || e.set == restrictSet6 }
func (e element) isAllow() bool    { return e.set == allowSet4 || e.set == allowSet6 }
func (e element) isMember() bool   { return e.set == memberSet4 || e.set == memberSet6 }

// String spells the element as nft lists it, key and value: a drain set
// is typed by raw payload, so nft spells its elements as integers.
func (e element) String() string {
	switch {
	case e.isPort():
		proto, _ := e.proto.nftName()
		return fmt.Sprintf("%s . %s . %d : %d", e.addr, proto, e.port, e.nodePort)
	case e.isNode():
		return e.addr.String() + " : " + e.nodeIP.String()
	case e.isAllow():
		return e.keyString()
	}
	return e.keyString()
}

// keyString spells the element's key alone, as for a delete.
func (e element) keyString() string {
	switch {
	case e.isPort():
		proto, _ := e.proto.nftName()
		return fmt.Sprintf("%s . %s . %d", e.addr, proto, e.port)
	case e.isNode(), e.isMember():
		return e.addr.String()
	case e.isRestrict():
		proto, _ := e.proto.nftName()
		return fmt.Sprintf("%s . %s . %d", e.addr, proto, e.port)
	case e.isAllow():
		proto, _ := e.proto.nftName()
		return fmt.Sprintf("%s . %s . %d . %s", e.addr, proto, e.port, addrRange{e.from, e.to})
	case e.set == memberPorts:
		proto, _ := e.proto.nftName()
		return fmt.Sprintf("%s . %d", proto, e.port)
	}
	return "0x" + hex.EncodeToString(e.addr.AsSlice())
}

// encode returns the bytes the kernel stores: the key, and the value of a
// map element.
//
// A concatenated key is its fields in order, each padded with zeros to a
// multiple of four bytes (one 32-bit register each), as nft lays it out:
// port4's "198.51.100.1 . tcp . 80" is c6 33 64 01 | 06 00 00 00 | 00 50 00
// 00, port6's key is 24 bytes. Ports are in network byte order; the value
// of a port map is the bare two-byte port, that of a node map the address.
//
// An allow set's element is an interval of keys: k holds the range's first
// client address, end its last (nil for the other sets); the rest of the
// key is the same in both.
func (e element) encode() (k, v, end []byte) {
	k = e.addr.AsSlice()
	protoPort := func(b []byte) []byte {
		num, _ := e.proto.number()
		b = append(b, num, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, e.port)
		return append(b, 0, 0)
	}
	switch {
	case e.isPort():
		k = protoPort(k)
		v = binary.BigEndian.AppendUint16(nil, e.nodePort)
	case e.isNode():
		v = e.nodeIP.AsSlice()
	case e.isRestrict():
		k = protoPort(k)
	case e.isAllow():
		k = protoPort(k)
		end = append(slices.Clone(k), e.to.AsSlice()...)
		k = append(k, e.from.AsSlice()...)
	case e.set == memberPorts:
		k = protoPort(nil)
	}
	return k, v, end
}

// decodeElement is the inverse of encode, for the elements of set; it
// does not decode member-ports.
func decodeElement(set string, k, v, end []byte) (element, error) {
	e := element{set: set}
	bad := func() (element, error) {
		return element{}, fmt.Errorf("unexpected element %x : %x of %s", k, v, set)
	}
	size := 4
	if strings.HasSuffix(set, "6") {
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
	case e.isDrain(), e.isMember():
		if len(k) != size || len(v) != 0 {
			return bad()
		}
	case e.isRestrict(), e.isAllow():
		if len(k) < size+8 || len(v) != 0 {
			return bad()
		}
		var ok bool
		if e.proto, ok = protocolFromNumber(k[size]); !ok {
			return bad()
		}
		e.port = binary.BigEndian.Uint16(k[size+4:])
		if e.isAllow() {
			if len(k) != 2*size+8 || len(end) != 2*size+8 {
				return bad()
			}
			e.from, _ = netip.AddrFromSlice(k[size+8:])
			e.to, _ = netip.AddrFromSlice(end[size+8:])
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
