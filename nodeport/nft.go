package nodeport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NFT is what a Forwarder needs of nftables for its one table: atomic
// transactions, and reads of what the table holds. NewNFT builds the real
// one, which talks netlink to the kernel.
type NFT interface {
	// Run applies tx atomically: all of it or none. As in the kernel,
	// adding an element that is already there with the same value
	// succeeds, while adding one that holds another value, deleting one
	// that is missing, or naming a missing set or table fails it.
	Run(ctx context.Context, tx *Transaction) error
	// List returns what the table holds.
	List(ctx context.Context) (*Listing, error)
}

// ElementOp is one element operation of an element batch.
type ElementOp struct {
	// Delete, if set, removes the element with Element's key (its value
	// is ignored); otherwise the element is added.
	Delete bool
	// Element names the set or map, the key and the value.
	Element element
}

// Listing is what List read of the table: the chains and their rules'
// comments, and the sets and maps and their elements, as the kernel holds
// them. A chain or set that is missing has no entry; a table that is
// missing has none at all.
type Listing struct {
	Chains map[string]ListedChain
	Sets   map[string][]ListedElement
}

// ListedChain is one chain of a Listing.
type ListedChain struct {
	Type     string
	Hook     uint32
	Priority int32
	// Comments are the comments of the chain's rules, in order ("" for a
	// rule without one).
	Comments []string
}

// ListedElement is one element of a Listing, as the kernel stores it:
// KeyEnd is the last key of an interval (allow sets only).
type ListedElement struct {
	Key, Value, KeyEnd []byte
}

// DefaultTable is the name of the inet table a Forwarder owns by default.
const DefaultTable = "berth"

// NFTOptions configure NewNFT.
type NFTOptions struct {
	// Table is the name of the inet table to own; DefaultTable if empty.
	Table string
	// Netns, if set, is the path of a network namespace (such as
	// /run/netns/NAME or /proc/PID/ns/net) whose nftables to program instead
	// of the caller's. The speaker leaves it empty; tests use it.
	Netns string
}

// NewNFT returns the NFT of table inet opts.Table, which talks to the
// kernel over netlink; it needs no nft binary. It opens its socket on first
// use.
func NewNFT(opts NFTOptions) (NFT, error) {
	table := opts.Table
	if table == "" {
		table = DefaultTable
	}
	if opts.Netns != "" {
		if _, err := os.Stat(opts.Netns); err != nil {
			return nil, fmt.Errorf("setting up nftables for table inet %s: %w", table, err)
		}
	}
	return &nftables{table: table, conn: nlConn{netns: opts.Netns}}, nil
}

// nftables is the NFT NewNFT returns.
type nftables struct {
	table string

	mu   sync.Mutex
	conn nlConn
}

func (n *nftables) Run(ctx context.Context, tx *Transaction) error {
	msgs := tx.messages(n.table)
	if len(msgs) == 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.conn.batch(ctx, msgs); err != nil {
		return fmt.Errorf("sending %d operations over netlink: %w", tx.NumOperations(), err)
	}
	return nil
}

func (n *nftables) List(ctx context.Context) (*Listing, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := &Listing{Chains: map[string]ListedChain{}, Sets: map[string][]ListedElement{}}
	tableAttr := func(typ uint16) netlink.Attribute { return attr(typ, cstr(n.table)) }

	chains, err := n.conn.dump(ctx, nftMsg(unix.NFT_MSG_GETCHAIN, 0, []netlink.Attribute{tableAttr(unix.NFTA_CHAIN_TABLE)}))
	if err != nil {
		return nil, fmt.Errorf("listing chains: %w", err)
	}
	for _, m := range chains {
		name, c, err := parseChain(m, n.table)
		if err != nil {
			return nil, err
		}
		if name != "" {
			l.Chains[name] = c
		}
	}
	rules, err := n.conn.dump(ctx, nftMsg(unix.NFT_MSG_GETRULE, 0, []netlink.Attribute{tableAttr(unix.NFTA_RULE_TABLE)}))
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	for _, m := range rules {
		chain, comment, err := parseRule(m, n.table)
		if err != nil {
			return nil, err
		}
		if c, ok := l.Chains[chain]; ok {
			c.Comments = append(c.Comments, comment)
			l.Chains[chain] = c
		}
	}
	for _, s := range sets() {
		replies, err := n.conn.dump(ctx, nftMsg(unix.NFT_MSG_GETSETELEM, 0, []netlink.Attribute{
			tableAttr(unix.NFTA_SET_ELEM_LIST_TABLE), attr(unix.NFTA_SET_ELEM_LIST_SET, cstr(s.name))}))
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing the elements of %s: %w", s.name, err)
		}
		elems := []ListedElement{}
		for _, m := range replies {
			if elems, err = parseElements(m, elems); err != nil {
				return nil, fmt.Errorf("listing the elements of %s: %w", s.name, err)
			}
		}
		l.Sets[s.name] = elems
	}
	return l, nil
}
