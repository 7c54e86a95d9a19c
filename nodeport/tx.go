package nodeport

import (
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Transaction is one atomic batch of operations on the table, which NFT.Run
// sends as one nfnetlink batch: the kernel applies all of it or none.
// text spells it as the nft commands it stands for.
type Transaction struct {
	ops []op
}

type opKind int

const (
	opAddTable    opKind = iota // add table (no comment): makes a following delete succeed
	opDeleteTable               // delete table
	opCreateTable               // add table with its comment
	opAddSet
	opAddChain
	opAddRule
	opAddElement
	opDeleteElement
)

type op struct {
	kind  opKind
	set   *setSpec   // opAddSet
	chain *chainSpec // opAddChain, and the chain of opAddRule
	rule  *ruleSpec  // opAddRule
	elem  element    // opAddElement, opDeleteElement
}

func (tx *Transaction) add(o op) { tx.ops = append(tx.ops, o) }

// NumOperations returns the number of operations of tx.
func (tx *Transaction) NumOperations() int { return len(tx.ops) }

// createsTable reports whether tx writes the table rather than only
// elements.
func (tx *Transaction) createsTable() bool {
	for _, o := range tx.ops {
		if o.kind != opAddElement && o.kind != opDeleteElement {
			return true
		}
	}
	return false
}

// elementTx returns a transaction of element operations.
func elementTx(ops []ElementOp) *Transaction {
	tx := &Transaction{ops: make([]op, 0, len(ops))}
	for _, eo := range ops {
		k := opAddElement
		if eo.Delete {
			k = opDeleteElement
		}
		tx.add(op{kind: k, elem: eo.Element})
	}
	return tx
}

// text spells tx as nft commands on table inet table, one a line.
func (tx *Transaction) text(table string) string {
	var b strings.Builder
	t := "inet " + table
	for _, o := range tx.ops {
		switch o.kind {
		case opAddTable:
			fmt.Fprintf(&b, "add table %s\n", t)
		case opDeleteTable:
			fmt.Fprintf(&b, "delete table %s\n", t)
		case opCreateTable:
			fmt.Fprintf(&b, "add table %s { comment %q ; }\n", t, tableComment)
		case opAddSet:
			fmt.Fprintf(&b, "add %s %s %s { %s ; }\n", o.set.kind, t, o.set.name, o.set.spec)
		case opAddChain:
			c := o.chain
			fmt.Fprintf(&b, "add chain %s %s { type %s hook %s priority %d ; }\n", t, c.name, c.typ, c.hookName(), c.priority)
		case opAddRule:
			fmt.Fprintf(&b, "add rule %s %s %s comment %q\n", t, o.chain.name, o.rule.text, o.rule.comment)
		case opAddElement:
			fmt.Fprintf(&b, "add element %s %s { %s }\n", t, o.elem.set, o.elem)
		case opDeleteElement:
			fmt.Fprintf(&b, "delete element %s %s { %s }\n", t, o.elem.set, o.elem.keyString())
		}
	}
	return b.String()
}

// maxElemsPerMsg keeps each message's element list well below the 64 KiB
// a netlink attribute can hold (an IPv6 port element takes 48 bytes).
const maxElemsPerMsg = 256

// messages encodes tx for table inet table, in order. Consecutive element
// operations of one kind on one set share a message, up to maxElemsPerMsg.
// Named sets created in tx are also referred to by their netlink ID (as nft
// does); anonymous sets, by theirs alone.
func (tx *Transaction) messages(table string) []netlink.Message {
	tableAttr := func(typ uint16) netlink.Attribute { return attr(typ, cstr(table)) }
	var msgs []netlink.Message
	add := func(typ uint16, flags netlink.HeaderFlags, attrs ...netlink.Attribute) {
		msgs = append(msgs, nftMsg(typ, flags, attrs))
	}
	created := map[string]bool{} // sets created by tx
	nextID := uint32(len(sets()))
	var elems []netlink.Attribute // of the element message being built
	var elemOp op
	flushElems := func() {
		if len(elems) == 0 {
			return
		}
		typ, flags := uint16(unix.NFT_MSG_NEWSETELEM), netlink.HeaderFlags(netlink.Create)
		if elemOp.kind == opDeleteElement {
			typ, flags = unix.NFT_MSG_DELSETELEM, 0
		}
		attrs := []netlink.Attribute{tableAttr(unix.NFTA_SET_ELEM_LIST_TABLE), attr(unix.NFTA_SET_ELEM_LIST_SET, cstr(elemOp.elem.set))}
		if created[elemOp.elem.set] {
			attrs = append(attrs, u32Attr(unix.NFTA_SET_ELEM_LIST_SET_ID, setID(elemOp.elem.set)))
		}
		add(typ, flags, append(attrs, nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS, elems...))...)
		elems = nil
	}
	for _, o := range tx.ops {
		if o.kind == opAddElement || o.kind == opDeleteElement {
			if len(elems) > 0 && (o.kind != elemOp.kind || o.elem.set != elemOp.elem.set || len(elems) == maxElemsPerMsg) {
				flushElems()
			}
			k, v, end := o.elem.encode()
			if o.kind == opDeleteElement {
				v = nil
			}
			elems, elemOp = append(elems, elementAttr(k, v, end)), o
			continue
		}
		flushElems()
		switch o.kind {
		case opAddTable:
			add(unix.NFT_MSG_NEWTABLE, netlink.Create, tableAttr(unix.NFTA_TABLE_NAME), u32Attr(unix.NFTA_TABLE_FLAGS, 0))
		case opDeleteTable:
			add(unix.NFT_MSG_DELTABLE, 0, tableAttr(unix.NFTA_TABLE_NAME))
		case opCreateTable:
			add(unix.NFT_MSG_NEWTABLE, netlink.Create, tableAttr(unix.NFTA_TABLE_NAME), u32Attr(unix.NFTA_TABLE_FLAGS, 0),
				attr(nftaTableUserdata, udata(nil).str(udataComment, tableComment)))
		case opAddSet:
			created[o.set.name] = true
			add(unix.NFT_MSG_NEWSET, netlink.Create, setAttrs(table, *o.set, setID(o.set.name))...)
		case opAddChain:
			c := o.chain
			add(unix.NFT_MSG_NEWCHAIN, netlink.Create, tableAttr(unix.NFTA_CHAIN_TABLE), attr(unix.NFTA_CHAIN_NAME, cstr(c.name)),
				attr(unix.NFTA_CHAIN_TYPE, cstr(c.typ)),
				nest(unix.NFTA_CHAIN_HOOK, u32Attr(unix.NFTA_HOOK_HOOKNUM, c.hook), u32Attr(unix.NFTA_HOOK_PRIORITY, uint32(c.priority))))
		case opAddRule:
			var anonID uint32
			if o.rule.usesL4protos {
				nextID++
				anonID = nextID
				add(unix.NFT_MSG_NEWSET, netlink.Create, setAttrs(table, l4protos, anonID)...)
				var es []netlink.Attribute
				for _, k := range l4protoElems {
					es = append(es, elementAttr(k, nil, nil))
				}
				add(unix.NFT_MSG_NEWSETELEM, netlink.Create, tableAttr(unix.NFTA_SET_ELEM_LIST_TABLE),
					attr(unix.NFTA_SET_ELEM_LIST_SET, cstr(l4protos.name)), u32Attr(unix.NFTA_SET_ELEM_LIST_SET_ID, anonID),
					nest(unix.NFTA_SET_ELEM_LIST_ELEMENTS, es...))
			}
			exprs := o.rule.exprs(anonID)
			list := make([]netlink.Attribute, len(exprs))
			for i, e := range exprs {
				list[i] = netlink.Attribute(e)
			}
			add(unix.NFT_MSG_NEWRULE, netlink.Create|netlink.Append, tableAttr(unix.NFTA_RULE_TABLE),
				attr(unix.NFTA_RULE_CHAIN, cstr(o.chain.name)), attr(unix.NLA_F_NESTED|unix.NFTA_RULE_EXPRESSIONS, marshalAttrs(list)),
				attr(unix.NFTA_RULE_USERDATA, udata(nil).str(udataComment, o.rule.comment)))
		}
	}
	flushElems()
	return msgs
}

// setAttrs returns the attributes of a new set.
func setAttrs(table string, s setSpec, id uint32) []netlink.Attribute {
	attrs := []netlink.Attribute{attr(unix.NFTA_SET_TABLE, cstr(table)), attr(unix.NFTA_SET_NAME, cstr(s.name)),
		u32Attr(unix.NFTA_SET_FLAGS, s.flags), u32Attr(unix.NFTA_SET_KEY_TYPE, s.keyType), u32Attr(unix.NFTA_SET_KEY_LEN, s.keyLen)}
	if s.flags&unix.NFT_SET_MAP != 0 {
		attrs = append(attrs, u32Attr(unix.NFTA_SET_DATA_TYPE, s.dataType), u32Attr(unix.NFTA_SET_DATA_LEN, s.dataLen))
	}
	attrs = append(attrs, u32Attr(unix.NFTA_SET_ID, id))
	if s.size != 0 {
		attrs = append(attrs, nest(unix.NFTA_SET_DESC, u32Attr(unix.NFTA_SET_DESC_SIZE, s.size)))
	}
	if len(s.fields) > 0 {
		var fields []netlink.Attribute
		for _, l := range s.fields {
			fields = append(fields, nest(unix.NFTA_LIST_ELEM, u32Attr(nftaSetFieldLen, l)))
		}
		attrs = append(attrs, nest(unix.NFTA_SET_DESC, nest(nftaSetDescConcat, fields...)))
	}
	return append(attrs, attr(unix.NFTA_SET_USERDATA, s.udata))
}

// elementAttr is one element of an element list: its key, its value if v
// is not nil, and the end of its interval if end is not nil.
func elementAttr(k, v, end []byte) netlink.Attribute {
	attrs := []netlink.Attribute{dataValue(unix.NFTA_SET_ELEM_KEY, k)}
	if end != nil {
		attrs = append(attrs, dataValue(nftaSetElemKeyEnd, end))
	}
	if v != nil {
		attrs = append(attrs, dataValue(unix.NFTA_SET_ELEM_DATA, v))
	}
	return nest(unix.NFTA_LIST_ELEM, attrs...)
}

// nftMsg returns an nf_tables request of type typ for family inet.
func nftMsg(typ uint16, flags netlink.HeaderFlags, attrs []netlink.Attribute) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
			Flags: netlink.Request | netlink.Acknowledge | flags},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, marshalAttrs(attrs)...),
	}
}
