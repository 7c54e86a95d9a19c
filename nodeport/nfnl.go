package nodeport

import (
	"encoding/binary"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file spells the table's objects as nf_tables netlink attributes,
// the way nft 1.0.6 (through libnftnl) does: TestMatchesNFT loads the same
// commands with nft and checks that the kernel then holds the same table,
// as nft lists it, rule bytecode included. Only what the table uses is
// here.

// Registers, numbered as nft numbers them: the 128-bit register 1, and
// the 32-bit registers of a concatenation's later fields.
const (
	reg1   = unix.NFT_REG_1
	reg2   = unix.NFT_REG_2
	reg3   = unix.NFT_REG_3
	reg32n = unix.NFT_REG32_00 // reg32n+i is the i-th 32-bit register
)

// Conntrack keys and hook numbers the constants of x/sys/unix lack.
const (
	ctKeyDstIP  = 20 // NFT_CT_DST_IP
	ctKeyDstIP6 = 22 // NFT_CT_DST_IP6
	ctDirOrig   = 0  // IP_CT_DIR_ORIGINAL

	nfInetPreRouting = 0 // NF_INET_PRE_ROUTING
	nfInetLocalIn    = 1 // NF_INET_LOCAL_IN
	nfInetLocalOut   = 3 // NF_INET_LOCAL_OUT

	nftaTableUserdata = 6    // NFTA_TABLE_USERDATA
	nftaLookupFlags   = 5    // NFTA_LOOKUP_FLAGS
	lookupInvert      = 1    // NFT_LOOKUP_F_INV
	nftaSetElemKeyEnd = 10   // NFTA_SET_ELEM_KEY_END
	nftaSetDescConcat = 2    // NFTA_SET_DESC_CONCAT
	nftaSetFieldLen   = 1    // NFTA_SET_FIELD_LEN
	nftSetConcat      = 0x80 // NFT_SET_CONCAT
	nftaBitwiseOp     = 6    // NFTA_BITWISE_OP
	nfDrop            = 0    // NF_DROP
	nfAccept          = 1    // NF_ACCEPT

	payloadL4CsumPseudoHdr = 1 // NFT_PAYLOAD_L4CSUM_PSEUDOHDR
	natRangeProtoSpecified = 2 // NF_NAT_RANGE_PROTO_SPECIFIED
)

// nft's datatypes, as set key and data types.
const (
	typeInteger     = 4
	typeIPAddr      = 7
	typeIP6Addr     = 8
	typeInetProto   = 12
	typeInetService = 13
)

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cstr(s string) []byte { return append([]byte(s), 0) }

func attr(typ uint16, data []byte) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: data}
}

func u32Attr(typ uint16, v uint32) netlink.Attribute { return attr(typ, be32(v)) }

// nest returns a nested attribute holding attrs.
func nest(typ uint16, attrs ...netlink.Attribute) netlink.Attribute {
	return attr(unix.NLA_F_NESTED|typ, marshalAttrs(attrs))
}

// marshalAttrs encodes attrs; callers keep every attribute far below the
// 64 KiB netlink allows, the only reason encoding fails.
func marshalAttrs(attrs []netlink.Attribute) []byte {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		panic("nodeport: encoding netlink attributes: " + err.Error())
	}
	return b
}

// dataValue is an NFTA_DATA_VALUE nested in an attribute of type typ.
func dataValue(typ uint16, v []byte) netlink.Attribute {
	return nest(typ, attr(unix.NFTA_DATA_VALUE, v))
}

// udata builds the TLVs nft keeps in a table's, set's or rule's user data
// (one byte of type, one of length, the value): comments, and how to print
// a set's keys. Integers in it are in host byte order.
type udata []byte

func (u udata) bytes(typ byte, v []byte) udata { return append(append(u, typ, byte(len(v))), v...) }

func (u udata) u32(typ byte, v uint32) udata {
	return u.bytes(typ, binary.NativeEndian.AppendUint32(nil, v))
}

func (u udata) str(typ byte, s string) udata { return u.bytes(typ, cstr(s)) }

// User data types (libnftnl's udata.h).
const (
	udataComment = 0 // NFTNL_UDATA_TABLE_COMMENT, NFTNL_UDATA_RULE_COMMENT

	udataSetKeyByteOrder  = 0
	udataSetDataByteOrder = 1
	udataSetKeyTypeof     = 3
	udataSetDataInterval  = 6

	udataTypeofExpr = 0
	udataTypeofData = 1

	byteOrderHost = 1
	byteOrderBig  = 2

	exprTypePayload = 7 // nft's EXPR_PAYLOAD
	exprTypeMeta    = 9 // nft's EXPR_META
)

// expr is one expression of a rule.
type expr netlink.Attribute

func newExpr(name string, attrs ...netlink.Attribute) expr {
	return expr(nest(unix.NFTA_LIST_ELEM, attr(unix.NFTA_EXPR_NAME, cstr(name)), nest(unix.NFTA_EXPR_DATA, attrs...)))
}

func metaLoad(key, dreg uint32) expr {
	return newExpr("meta", u32Attr(unix.NFTA_META_KEY, key), u32Attr(unix.NFTA_META_DREG, dreg))
}

func cmpData(op uint32, data []byte) expr {
	return newExpr("cmp", u32Attr(unix.NFTA_CMP_SREG, reg1), u32Attr(unix.NFTA_CMP_OP, op), dataValue(unix.NFTA_CMP_DATA, data))
}

// bitwise computes reg1 = reg1 & mask (xor 0), over len(mask) bytes.
func bitwise(mask []byte) expr {
	return newExpr("bitwise", u32Attr(unix.NFTA_BITWISE_SREG, reg1), u32Attr(unix.NFTA_BITWISE_DREG, reg1),
		u32Attr(nftaBitwiseOp, unix.NFT_BITWISE_BOOL), u32Attr(unix.NFTA_BITWISE_LEN, uint32(len(mask))),
		dataValue(unix.NFTA_BITWISE_MASK, mask), dataValue(unix.NFTA_BITWISE_XOR, make([]byte, len(mask))))
}

func payloadLoad(base, offset, length, dreg uint32) expr {
	return newExpr("payload", u32Attr(unix.NFTA_PAYLOAD_DREG, dreg), u32Attr(unix.NFTA_PAYLOAD_BASE, base),
		u32Attr(unix.NFTA_PAYLOAD_OFFSET, offset), u32Attr(unix.NFTA_PAYLOAD_LEN, length))
}

// csum says which checksums a payload write fixes: csumType and csumOffset
// that of the header written (none if csumType is 0), pseudoHdr the
// transport checksum over a pseudo-header holding the address written.
type csum struct {
	csumType, csumOffset uint32
	pseudoHdr            bool
}

func payloadWrite(base, offset, length uint32, c csum) expr {
	attrs := []netlink.Attribute{u32Attr(unix.NFTA_PAYLOAD_SREG, reg1), u32Attr(unix.NFTA_PAYLOAD_BASE, base),
		u32Attr(unix.NFTA_PAYLOAD_OFFSET, offset), u32Attr(unix.NFTA_PAYLOAD_LEN, length)}
	if c.csumType != 0 {
		attrs = append(attrs, u32Attr(unix.NFTA_PAYLOAD_CSUM_TYPE, c.csumType), u32Attr(unix.NFTA_PAYLOAD_CSUM_OFFSET, c.csumOffset))
	}
	if c.pseudoHdr {
		attrs = append(attrs, u32Attr(unix.NFTA_PAYLOAD_CSUM_FLAGS, payloadL4CsumPseudoHdr))
	}
	return newExpr("payload", attrs...)
}

// lookup looks reg1 up in a set (matching if present) or, with dreg, in a
// map (loading the value into dreg).
func lookup(sreg uint32, set string, setID uint32, dreg uint32) expr {
	attrs := []netlink.Attribute{u32Attr(unix.NFTA_LOOKUP_SREG, sreg)}
	if dreg != 0 {
		attrs = append(attrs, u32Attr(unix.NFTA_LOOKUP_DREG, dreg))
	}
	attrs = append(attrs, attr(unix.NFTA_LOOKUP_SET, cstr(set)), u32Attr(unix.NFTA_LOOKUP_SET_ID, setID))
	return newExpr("lookup", attrs...)
}

// lookupNot matches if reg1 and the registers after it are not in a set.
func lookupNot(set string, setID uint32) expr {
	return newExpr("lookup", u32Attr(unix.NFTA_LOOKUP_SREG, reg1), attr(unix.NFTA_LOOKUP_SET, cstr(set)),
		u32Attr(unix.NFTA_LOOKUP_SET_ID, setID), u32Attr(nftaLookupFlags, lookupInvert))
}

// hton1 is the byte-order conversion nft puts on a one-byte field (meta
// l4proto) of a concatenated interval key: of size 2 and length 1, it
// changes nothing, but nft 1.0.6 emits it and the bytecode must match.
func hton1(reg uint32) expr {
	return newExpr("byteorder", u32Attr(unix.NFTA_BYTEORDER_SREG, reg), u32Attr(unix.NFTA_BYTEORDER_DREG, reg),
		u32Attr(unix.NFTA_BYTEORDER_OP, unix.NFT_BYTEORDER_HTON), u32Attr(unix.NFTA_BYTEORDER_LEN, 1),
		u32Attr(unix.NFTA_BYTEORDER_SIZE, 2))
}

func ctLoad(key, dreg uint32) expr {
	return newExpr("ct", u32Attr(unix.NFTA_CT_KEY, key), u32Attr(unix.NFTA_CT_DREG, dreg))
}

// ctLoadOrig loads a key of the connection's original direction.
func ctLoadOrig(key, dreg uint32) expr {
	return newExpr("ct", u32Attr(unix.NFTA_CT_KEY, key), u32Attr(unix.NFTA_CT_DREG, dreg),
		attr(unix.NFTA_CT_DIRECTION, []byte{ctDirOrig}))
}

func verdict(code uint32) expr {
	return newExpr("immediate", u32Attr(unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_VERDICT),
		nest(unix.NFTA_IMMEDIATE_DATA, nest(unix.NFTA_DATA_VERDICT, u32Attr(unix.NFTA_VERDICT_CODE, code))))
}

// dnat translates to the address in reg1 and the port in reg2.
func dnat(nfproto uint32) expr {
	return newExpr("nat", u32Attr(unix.NFTA_NAT_TYPE, unix.NFT_NAT_DNAT), u32Attr(unix.NFTA_NAT_FAMILY, nfproto),
		u32Attr(unix.NFTA_NAT_REG_ADDR_MIN, reg1), u32Attr(unix.NFTA_NAT_REG_PROTO_MIN, reg2),
		u32Attr(unix.NFTA_NAT_FLAGS, natRangeProtoSpecified))
}

// ctStateNew is "ct state new".
func ctStateNew() []expr {
	return []expr{ctLoad(unix.NFT_CT_STATE, reg1), bitwise(binary.NativeEndian.AppendUint32(nil, 8)), cmpData(unix.NFT_CMP_NEQ, make([]byte, 4))}
}

// metaIs is "meta KEY VALUE" for a one-byte key (nfproto, l4proto).
func metaIs(key uint32, v byte) []expr {
	return []expr{metaLoad(key, reg1), cmpData(unix.NFT_CMP_EQ, []byte{v})}
}
