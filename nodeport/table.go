package nodeport

import (
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// Names of the objects in the table. See doc.go for what each one does.
const (
	portMap4  = "port4"
	portMap6  = "port6"
	nodeMap4  = "node4"
	nodeMap6  = "node6"
	drainSet4 = "drain4"
	drainSet6 = "drain6"
	// Source ranges: the keys of restricted rules, and each one's allowed
	// client ranges.
	restrictSet4 = "restrict4"
	restrictSet6 = "restrict6"
	allowSet4    = "allow4"
	allowSet6    = "allow6"
	// The membership port: the protocols and port, and the node addresses
	// allowed to reach it.
	memberPorts = "member-ports"
	memberSet4  = "members4"
	memberSet6  = "members6"

	rewritePrerouting = "rewrite-prerouting"
	rewriteOutput     = "rewrite-output"
	natPrerouting     = "nat-prerouting"
	natOutput         = "nat-output"
	memberInput       = "member-input"

	tableComment = "berth: LoadBalancer address to NodePort; managed by berth-speaker, do not edit"
)

// rewritePriority runs the rewrite after conntrack (-200) has recorded the
// load-balancer address as the connection's original destination, after
// the filter chains kube-proxy's nftables mode hooks at dstnat-10 (so its
// loadBalancerSourceRanges check still sees the load-balancer address), and
// before any NAT chain at dstnat (-100), which must see the NodePort.
const rewritePriority = -100 - 5

// natPriority puts the fallback DNAT after the proxies' own DNAT at dstnat:
// netfilter consults a later NAT chain only if no earlier one bound the
// connection, so this chain acts only when nobody else translated it.
const natPriority = -100 + 10

// family holds the spelling of one address family, in nft's syntax and in
// netlink.
type family struct {
	ip       string // "ip" or "ip6", the network header and the nat family
	portMap  string
	nodeMap  string
	addrType string
	suffix   string // "4" or "6", in rule comments
	drainSet string
	nfproto  string // "ipv4" or "ipv6"
	// daddr and redirectDst spell the packet's destination address and,
	// in an ICMP redirect, the destination the redirect is about, as raw
	// payload: nft has no name for the latter, and a set can only be
	// matched by expressions of its own type, so the drain sets are typed
	// by raw payload too (see drainRules).
	daddr, redirectDst string
	redirect           string // the ICMP type match of a redirect
	restrictSet        string
	allowSet           string
	memberSet          string

	nfprotoNum   byte   // NFPROTO_IPV4 or NFPROTO_IPV6
	addrLen      uint32 // bytes of an address
	daddrOffset  uint32 // of the destination address in the network header
	saddrOffset  uint32 // of the source address
	addrTypeNum  uint32 // nft's datatype of an address
	ctDst        uint32 // conntrack key of the original destination address
	icmpProto    byte   // ICMP's protocol number
	redirectType byte   // ICMP type of a redirect
}

var families = []family{
	{ip: "ip", portMap: portMap4, nodeMap: nodeMap4, addrType: "ipv4_addr", suffix: "4", drainSet: drainSet4,
		nfproto: "ipv4", daddr: "@nh,128,32", redirect: "icmp type redirect", redirectDst: "@th,192,32",
		restrictSet: restrictSet4, allowSet: allowSet4, memberSet: memberSet4,
		nfprotoNum: unix.NFPROTO_IPV4, addrLen: 4, daddrOffset: 16, saddrOffset: 12, addrTypeNum: typeIPAddr, ctDst: ctKeyDstIP,
		icmpProto: unix.IPPROTO_ICMP, redirectType: 5},
	{ip: "ip6", portMap: portMap6, nodeMap: nodeMap6, addrType: "ipv6_addr", suffix: "6", drainSet: drainSet6,
		nfproto: "ipv6", daddr: "@nh,192,128", redirect: "icmpv6 type nd-redirect", redirectDst: "@th,192,128",
		restrictSet: restrictSet6, allowSet: allowSet6, memberSet: memberSet6,
		nfprotoNum: unix.NFPROTO_IPV6, addrLen: 16, daddrOffset: 24, saddrOffset: 8, addrTypeNum: typeIP6Addr, ctDst: ctKeyDstIP6,
		icmpProto: unix.IPPROTO_ICMPV6, redirectType: 137},
}

func familyOf(addr netip.Addr) family {
	if addr.Is4() {
		return families[0]
	}
	return families[1]
}

// setSpec is a set or map of the table, as nft spells it (kind, name,
// spec) and as netlink carries it.
type setSpec struct {
	kind, name, spec string // e.g. "map", "node4", "type ipv4_addr : ipv4_addr"

	flags             uint32
	keyType, keyLen   uint32
	dataType, dataLen uint32   // maps only
	udata             udata    // how nft prints the keys and values
	size              uint32   // of a constant anonymous set
	fields            []uint32 // the field lengths of a concatenated interval key
}

// sets returns the sets and maps of the table, empty, in the order they
// are created (the four maps and two drain sets first, so that their IDs
// never changed); a set's netlink ID within a transaction is its index
// plus one.
func sets() []setSpec {
	var out []setSpec
	for _, f := range families {
		// The key's typeof entry is what nft 1.0.6 records for a
		// concatenation of plain types: expression type 13, no fields.
		port := udata(nil).u32(udataSetKeyByteOrder, 0).u32(udataSetDataByteOrder, byteOrderBig).
			bytes(udataSetKeyTypeof, udata(nil).u32(udataTypeofExpr, 13).bytes(udataTypeofData, nil)).
			u32(udataSetDataInterval, 0)
		node := udata(nil).u32(udataSetKeyByteOrder, byteOrderBig).u32(udataSetDataByteOrder, byteOrderBig).
			u32(udataSetDataInterval, 0)
		out = append(out,
			setSpec{kind: "map", name: f.portMap, spec: "type " + f.addrType + " . inet_proto . inet_service : inet_service",
				flags: unix.NFT_SET_MAP, keyType: (f.addrTypeNum<<6|typeInetProto)<<6 | typeInetService,
				keyLen: f.addrLen + 8, dataType: typeInetService, dataLen: 2, udata: port},
			setSpec{kind: "map", name: f.nodeMap, spec: "type " + f.addrType + " : " + f.addrType,
				flags: unix.NFT_SET_MAP, keyType: f.addrTypeNum, keyLen: f.addrLen, dataType: f.addrTypeNum,
				dataLen: f.addrLen, udata: node})
	}
	// A concatenation of plain types, as nft 1.0.6 records it in a set's
	// user data: host byte order, and a typeof entry of expression type
	// 13 without fields.
	concat := udata(nil).u32(udataSetKeyByteOrder, 0).
		bytes(udataSetKeyTypeof, udata(nil).u32(udataTypeofExpr, 13).bytes(udataTypeofData, nil))
	for _, f := range families {
		// typeof @nh,OFFSET,BITS: a payload expression of unknown
		// protocol at the network header (nft's base 2).
		payload := udata(nil).u32(0, 0).u32(1, 0).u32(2, 2).u32(3, f.daddrOffset*8).u32(4, f.addrLen*8)
		out = append(out, setSpec{kind: "set", name: f.drainSet, spec: "typeof " + f.daddr,
			keyType: typeInteger, keyLen: f.addrLen,
			udata: udata(nil).u32(udataSetKeyByteOrder, byteOrderBig).
				bytes(udataSetKeyTypeof, udata(nil).u32(udataTypeofExpr, exprTypePayload).bytes(udataTypeofData, payload))})
	}
	for _, f := range families {
		keyType := (f.addrTypeNum<<6|typeInetProto)<<6 | typeInetService
		out = append(out,
			setSpec{kind: "set", name: f.restrictSet, spec: "type " + f.addrType + " . inet_proto . inet_service",
				keyType: keyType, keyLen: f.addrLen + 8, udata: concat},
			setSpec{kind: "set", name: f.allowSet, spec: "type " + f.addrType + " . inet_proto . inet_service . " + f.addrType + " ; flags interval",
				flags: unix.NFT_SET_INTERVAL | nftSetConcat, keyType: keyType<<6 | f.addrTypeNum, keyLen: 2*f.addrLen + 8,
				udata: concat, fields: []uint32{f.addrLen, 1, 2, f.addrLen}})
	}
	out = append(out, setSpec{kind: "set", name: memberPorts, spec: "type inet_proto . inet_service",
		keyType: typeInetProto<<6 | typeInetService, keyLen: 8, udata: concat})
	for _, f := range families {
		out = append(out, setSpec{kind: "set", name: f.memberSet, spec: "type " + f.addrType,
			keyType: f.addrTypeNum, keyLen: f.addrLen, udata: udata(nil).u32(udataSetKeyByteOrder, byteOrderBig)})
	}
	return out
}

// setID returns the netlink ID of a named set within a transaction that
// creates the table.
func setID(name string) uint32 {
	return uint32(slices.IndexFunc(sets(), func(s setSpec) bool { return s.name == name }) + 1)
}

// l4protos is the anonymous set "{ tcp, udp, sctp }" of the NAT rules.
var l4protos = setSpec{kind: "set", name: "__set%d",
	flags: unix.NFT_SET_ANONYMOUS | unix.NFT_SET_CONSTANT, keyType: typeInetProto, keyLen: 1, size: 3,
	udata: udata(nil).u32(udataSetKeyByteOrder, byteOrderHost).
		bytes(udataSetKeyTypeof, udata(nil).u32(udataTypeofExpr, exprTypeMeta).
			bytes(udataTypeofData, udata(nil).u32(0, unix.NFT_META_L4PROTO)))}

// l4protoElems are the elements of l4protos.
var l4protoElems = [][]byte{{unix.IPPROTO_TCP}, {unix.IPPROTO_UDP}, {unix.IPPROTO_SCTP}}

// ruleSpec is one fixed rule: its comment, its text in nft's syntax, and
// its expressions as netlink carries them, which are the same rule
// (TestMatchesNFT checks it).
type ruleSpec struct {
	comment string
	text    string
	// exprs returns the expressions; anonID is the netlink ID of the
	// rule's own anonymous set (l4protos), if usesL4protos.
	exprs        func(anonID uint32) []expr
	usesL4protos bool
}

func fixed(exprs ...[]expr) func(uint32) []expr {
	all := slices.Concat(exprs...)
	return func(uint32) []expr { return all }
}

// drainRules return the rules that exempt the mid-stream packets of
// connections this node does not know, to a draining address, from the
// rewrite and the fallback DNAT: conntrack picks such a packet up as ct
// state new, and delivering it to the local NodePort would reset the
// connection; left alone it is routed, by the speaker's host route, to the
// old owner, which knows the connection. SYNs, and this node's own
// connections (not ct state new), are not affected. Only TCP: nothing
// tells a UDP flow's first packet from a later one.
func drainRules() []ruleSpec {
	var out []ruleSpec
	for _, f := range families {
		out = append(out, ruleSpec{
			comment: "drain" + f.suffix,
			text:    "ct state new meta nfproto " + f.nfproto + " " + f.daddr + " @" + f.drainSet + " tcp flags & (syn | ack) != syn accept",
			exprs: fixed(ctStateNew(), metaIs(unix.NFT_META_NFPROTO, f.nfprotoNum), []expr{
				payloadLoad(unix.NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen, reg1),
				lookup(reg1, f.drainSet, setID(f.drainSet), 0)},
				metaIs(unix.NFT_META_L4PROTO, unix.IPPROTO_TCP), []expr{
					payloadLoad(unix.NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1, reg1),
					bitwise([]byte{0x12}), // syn | ack
					cmpData(unix.NFT_CMP_NEQ, []byte{0x02}),
					verdict(nfAccept)}),
		})
	}
	return out
}

// redirectRules drop the ICMP redirects the node would send a client
// whose packets for a draining address it forwards to the old owner out of
// the interface they came in on: a client that obeyed would send its new
// connections to the old owner too.
func redirectRules() []ruleSpec {
	var out []ruleSpec
	for _, f := range families {
		out = append(out, ruleSpec{
			comment: "redirect" + f.suffix,
			text:    f.redirect + " " + f.redirectDst + " @" + f.drainSet + " drop",
			exprs: fixed(metaIs(unix.NFT_META_NFPROTO, f.nfprotoNum), metaIs(unix.NFT_META_L4PROTO, f.icmpProto), []expr{
				payloadLoad(unix.NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, reg1),
				cmpData(unix.NFT_CMP_EQ, []byte{f.redirectType}),
				payloadLoad(unix.NFT_PAYLOAD_TRANSPORT_HEADER, 24, f.addrLen, reg1),
				lookup(reg1, f.drainSet, setID(f.drainSet), 0),
				verdict(nfDrop)}),
		})
	}
	return out
}

// rangesRule drops new connections to a restricted address, protocol and
// port (restrictN) from a client outside its source ranges (allowN):
// "ct state new ADDR daddr . meta l4proto . th dport @restrictN ADDR daddr
// . meta l4proto . th dport . ADDR saddr != @allowN drop". It comes before
// the rewrite, so a refused client never reaches the NodePort, whatever
// the proxy behind it does. The port is read as th dport, the same two
// bytes for TCP, UDP and SCTP; the protocol is part of the key.
func rangesRule(f family) ruleSpec {
	l4Reg, portReg, saddrReg := uint32(reg32n+1), uint32(reg32n+2), uint32(reg32n+3)
	if f.addrLen == 16 {
		l4Reg, portReg, saddrReg = reg32n+4, reg32n+5, reg32n+6
	}
	key := func() []expr {
		return []expr{payloadLoad(unix.NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen, reg1),
			metaLoad(unix.NFT_META_L4PROTO, l4Reg)}
	}
	dport := payloadLoad(unix.NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, portReg)
	return ruleSpec{
		comment: "ranges" + f.suffix,
		text: "ct state new " + f.ip + " daddr . meta l4proto . th dport @" + f.restrictSet + " " +
			f.ip + " daddr . meta l4proto . th dport . " + f.ip + " saddr != @" + f.allowSet + " drop",
		exprs: fixed(ctStateNew(), metaIs(unix.NFT_META_NFPROTO, f.nfprotoNum), key(), []expr{dport,
			lookup(reg1, f.restrictSet, setID(f.restrictSet), 0)}, key(), []expr{hton1(l4Reg), dport,
			payloadLoad(unix.NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen, saddrReg),
			lookupNot(f.allowSet, setID(f.allowSet)),
			verdict(nfDrop)}),
	}
}

// membersRule drops what reaches the membership port (member-ports, the
// protocols and port of layer 2's memberlist) from an address that is not
// a node's (membersN): "meta nfproto NFPROTO meta l4proto . th dport
// @member-ports ADDR saddr != @membersN drop". With member-ports empty it
// matches nothing.
func membersRule(f family) ruleSpec {
	return ruleSpec{
		comment: "members" + f.suffix,
		text:    "meta nfproto " + f.nfproto + " meta l4proto . th dport @" + memberPorts + " " + f.ip + " saddr != @" + f.memberSet + " drop",
		exprs: fixed(metaIs(unix.NFT_META_NFPROTO, f.nfprotoNum), []expr{
			metaLoad(unix.NFT_META_L4PROTO, reg1),
			payloadLoad(unix.NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32n+1),
			lookup(reg1, memberPorts, setID(memberPorts), 0),
			payloadLoad(unix.NFT_PAYLOAD_NETWORK_HEADER, f.saddrOffset, f.addrLen, reg1),
			lookupNot(f.memberSet, setID(f.memberSet)),
			verdict(nfDrop)}),
	}
}

// transportCsum is where each protocol keeps its checksum, which a port
// rewrite fixes: TCP's and UDP's (internet checksum) at 16 and 6, SCTP's
// CRC32c at 8.
var transportCsum = map[string]csum{
	"tcp":  {csumType: unix.NFT_PAYLOAD_CSUM_INET, csumOffset: 16},
	"udp":  {csumType: unix.NFT_PAYLOAD_CSUM_INET, csumOffset: 6},
	"sctp": {csumType: unix.NFT_PAYLOAD_CSUM_SCTP, csumOffset: 8},
}

// rewriteRule is "ct state new PROTO dport set ADDR . meta l4proto . PROTO
// dport map @portN ADDR set ADDR map @nodeN" for one family and protocol.
//
// The concatenated key takes register 1 for the address and the next
// 32-bit registers for the protocol and port; the IPv4 address writes fix
// the IP header checksum, and both families' address writes the transport
// checksum over the pseudo-header.
func rewriteRule(f family, proto string, num byte) ruleSpec {
	l4Reg, portReg := uint32(reg32n+1), uint32(reg32n+2)
	addrCsum := csum{csumType: unix.NFT_PAYLOAD_CSUM_INET, csumOffset: 10, pseudoHdr: true}
	if f.addrLen == 16 {
		l4Reg, portReg = reg2, reg32n+5
		addrCsum = csum{pseudoHdr: true}
	}
	return ruleSpec{
		comment: proto + f.suffix,
		text: "ct state new " + proto + " dport set " + f.ip + " daddr . meta l4proto . " + proto + " dport map @" + f.portMap +
			" " + f.ip + " daddr set " + f.ip + " daddr map @" + f.nodeMap,
		exprs: fixed(ctStateNew(), metaIs(unix.NFT_META_L4PROTO, num), metaIs(unix.NFT_META_NFPROTO, f.nfprotoNum), []expr{
			payloadLoad(unix.NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen, reg1),
			metaLoad(unix.NFT_META_L4PROTO, l4Reg),
			payloadLoad(unix.NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, portReg),
			lookup(reg1, f.portMap, setID(f.portMap), reg1),
			payloadWrite(unix.NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, transportCsum[proto]),
			payloadLoad(unix.NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen, reg1),
			lookup(reg1, f.nodeMap, setID(f.nodeMap), reg1),
			payloadWrite(unix.NFT_PAYLOAD_NETWORK_HEADER, f.daddrOffset, f.addrLen, addrCsum)}),
	}
}

// natRule is "meta l4proto { tcp, udp, sctp } dnat ADDR to ct original
// ADDR daddr map @nodeN : ct original ADDR daddr . meta l4proto . ct
// original proto-dst map @portN" for one family: the node IP into register
// 1, the NodePort into register 2.
func natRule(f family) ruleSpec {
	l4Reg, portReg := uint32(reg32n+5), uint32(reg32n+6)
	if f.addrLen == 16 {
		l4Reg, portReg = reg3, reg32n+9
	}
	return ruleSpec{
		comment: "nat" + f.suffix,
		text: "meta l4proto { tcp, udp, sctp } dnat " + f.ip + " to ct original " + f.ip + " daddr map @" + f.nodeMap +
			" : ct original " + f.ip + " daddr . meta l4proto . ct original proto-dst map @" + f.portMap,
		usesL4protos: true,
		exprs: func(anonID uint32) []expr {
			return []expr{
				metaLoad(unix.NFT_META_L4PROTO, reg1),
				lookup(reg1, l4protos.name, anonID, 0),
				ctLoadOrig(f.ctDst, reg1),
				lookup(reg1, f.nodeMap, setID(f.nodeMap), reg1),
				ctLoadOrig(f.ctDst, reg2),
				metaLoad(unix.NFT_META_L4PROTO, l4Reg),
				ctLoadOrig(unix.NFT_CT_PROTO_DST, portReg),
				lookup(reg2, f.portMap, setID(f.portMap), reg2),
				dnat(uint32(f.nfprotoNum)),
			}
		},
	}
}

// chainSpec is one base chain and its fixed rules.
type chainSpec struct {
	name     string
	typ      string // filter, route or nat
	hook     uint32
	priority int32
	rules    []ruleSpec
}

// hookName spells the chain's hook as nft does.
func (c chainSpec) hookName() string {
	switch c.hook {
	case nfInetPreRouting:
		return "prerouting"
	case nfInetLocalIn:
		return "input"
	}
	return "output"
}

// chains returns the five base chains. Their rules never change; Services
// only add map elements, so the cost per packet does not grow with them.
//
// The rewrite chains set the destination port first, from the port map
// keyed by the untouched destination, and then the address, from the node
// map keyed by the (still untouched) destination address; nft cannot write
// two fields from one lookup. The payload statements update the IP, TCP and
// UDP checksums, and the kernel recomputes SCTP's CRC32c (csum_type sctp).
// A packet without a matching element fails the first lookup and passes
// untouched. The output chain is of type route so that the kernel routes
// the node's own packet again after its destination changed.
func chains() []chainSpec {
	var rewrite, nat, ranges, members []ruleSpec
	for _, f := range families {
		rewrite = append(rewrite, rewriteRule(f, "tcp", unix.IPPROTO_TCP), rewriteRule(f, "udp", unix.IPPROTO_UDP),
			rewriteRule(f, "sctp", unix.IPPROTO_SCTP))
		nat = append(nat, natRule(f))
		ranges = append(ranges, rangesRule(f))
		members = append(members, membersRule(f))
	}
	drain := drainRules()
	return []chainSpec{
		{rewritePrerouting, "filter", nfInetPreRouting, rewritePriority, slices.Concat(ranges, drain, rewrite)},
		{rewriteOutput, "route", nfInetLocalOut, rewritePriority, slices.Concat(redirectRules(), ranges, rewrite)},
		{natPrerouting, "nat", nfInetPreRouting, natPriority, slices.Concat(drain, nat)},
		{natOutput, "nat", nfInetLocalOut, natPriority, nat},
		{memberInput, "filter", nfInetLocalIn, 0, members},
	}
}

// comments returns the comments of a chain's rules, in order; Check
// compares them to tell whether the chain was changed.
func (c chainSpec) comments() []string {
	out := make([]string, len(c.rules))
	for i, r := range c.rules {
		out[i] = r.comment
	}
	return out
}
