package nodeport

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// state is what a Forwarder knows about its table.
type state int

const (
	// stateUnknown: nothing written yet (or Cleanup ran); the next Sync writes the whole table.
	stateUnknown state = iota
	// stateSynced: the table holds exactly applied.
	stateSynced
	// stateDrifted: Check or a failed update found the table changed by someone else.
	stateDrifted
)

// Forwarder keeps one nftables table forwarding load-balancer addresses to
// NodePorts. It is safe for concurrent use; calls are serialized.
type Forwarder struct {
	nft NFT

	mu           sync.Mutex
	state        state
	applied      ruleSet                   // what the table holds when state is stateSynced
	appliedNodes map[netip.Addr]netip.Addr // the node IP of each address of applied
	// loose are the elements of the drain and membership sets, as last
	// given to Drain and Members; appliedLoose what the table holds of
	// them when state is stateSynced.
	loose, appliedLoose map[element]bool
	// notProgrammed counts the rules the last Sync left out: invalid, or
	// refused by the kernel.
	notProgrammed int
	// membersOnly: the table has only the membership chain (NewMembersOnly).
	membersOnly bool
}

// New returns a Forwarder that programs the table of nft. It writes nothing
// until the first Sync.
func New(nft NFT) *Forwarder {
	return &Forwarder{nft: nft}
}

// NewMembersOnly returns a Forwarder whose table guards only the membership
// port (Members), for a speaker that forwards nothing: its one chain is the
// membership chain in the input hook; its sets exist, empty but for the
// membership's, and no chain rewrites or translates any packet. Sync takes
// no rules; it writes the table.
func NewMembersOnly(nft NFT) *Forwarder {
	return &Forwarder{nft: nft, membersOnly: true}
}

// chains returns the chains of f's table.
func (f *Forwarder) chains() []chainSpec {
	all := chains()
	if f.membersOnly {
		return slices.DeleteFunc(all, func(c chainSpec) bool { return c.name != memberInput })
	}
	return all
}

// maxElementOps bounds the operations of one element batch. A bigger
// change (thousands of Services at once) is written as a whole table
// instead: that keeps every netlink batch far below the socket's buffer
// sizes, and rewriting 10,000 rules takes a fraction of a second anyway.
const maxElementOps = 1000

// Sync makes the table forward exactly rules. An invalid rule (see
// IsInvalidRule) is left out, and so are the rules of an address whose
// elements the kernel refuses (see IsRefused): every other rule is still
// programmed, and the error reports the rest; a later Sync tries them
// again. The first call, and the first call after drift, writes the whole
// table in one transaction; later calls add and delete only the map
// elements that changed, in one netlink batch, and do nothing when nothing
// changed. An element update that fails is logged and followed at once by
// a full rewrite.
func (f *Forwarder) Sync(ctx context.Context, rules []Rule) error {
	if f.membersOnly && len(rules) > 0 {
		return fmt.Errorf("%d forwarding rules for a table that guards only the membership port", len(rules))
	}
	desired, nodes, errs := validate(rules)
	f.mu.Lock()
	defer f.mu.Unlock()
	logger := klog.FromContext(ctx).WithName("nodeport")
	var invalid error
	if len(errs) > 0 {
		invalid = fmt.Errorf("validating rules: %w", errors.Join(errs...))
		logger.Error(invalid, "Leaving out invalid forwarding rules")
	}
	f.notProgrammed = len(errs)

	if f.state == stateSynced {
		ops := f.incremental(desired, nodes)
		if len(ops) == 0 {
			return invalid
		}
		if len(ops) <= maxElementOps {
			err := f.nft.Run(ctx, elementTx(ops))
			if err == nil {
				f.applied, f.appliedNodes = desired, nodes
				return invalid
			}
			f.state = stateDrifted
			if ctx.Err() != nil {
				return fmt.Errorf("updating nftables maps: %w", err)
			}
			logger.Info("Incremental nftables update failed; rewriting the table", "err", err, "reason", updateFailure(err))
		} else {
			logger.V(2).Info("Too many changes for one element batch; rewriting the table", "operations", len(ops))
		}
	}
	if f.state == stateDrifted {
		logger.Info("Rewriting drifted nftables table", "rules", len(desired.targets))
	}
	err := f.nft.Run(ctx, f.full(desired, nodes))
	if err == nil {
		f.applied, f.appliedNodes, f.appliedLoose, f.state = desired, nodes, f.loose, stateSynced
		return invalid
	}
	if ctx.Err() != nil {
		return fmt.Errorf("writing nftables table: %w", err)
	}
	refused, ierr := f.isolate(ctx, desired, nodes)
	if ierr != nil {
		return fmt.Errorf("writing nftables table: %w", errors.Join(err, ierr))
	}
	if len(refused) == 0 {
		// Address by address, the kernel took everything after all.
		logger.Info("The whole table failed but every address was then accepted", "err", err)
		return invalid
	}
	f.notProgrammed += len(refused)
	rerr := &RefusedError{Rules: refused, Err: err}
	logger.Error(rerr, "The kernel refused some forwarding rules; the others are programmed", "refused", len(refused))
	return errors.Join(invalid, rerr)
}

// NotProgrammed returns how many of the rules given to the last Sync are
// not in the table: invalid ones, and those the kernel refused.
func (f *Forwarder) NotProgrammed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notProgrammed
}

// updateFailure says, for the log, what a failed element update most
// likely means.
func updateFailure(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT):
		return "the table or a map is missing: someone deleted it"
	case errors.Is(err, unix.EEXIST):
		return "an element holds a value Berth did not write: someone changed it"
	}
	return "unexpected error"
}

// Cleanup deletes the table, if it exists. A later Sync writes it afresh.
func (f *Forwarder) Cleanup(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Adding first makes the delete succeed whether or not the table exists.
	tx := &Transaction{ops: []op{{kind: opAddTable}, {kind: opDeleteTable}}}
	if err := f.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("deleting nftables table: %w", err)
	}
	f.state, f.applied, f.appliedNodes, f.appliedLoose = stateUnknown, ruleSet{}, nil, nil
	return nil
}

// full returns a transaction that replaces the whole table with desired,
// whose addresses go to nodes. Deleting and re-adding the table inside one
// transaction is atomic: packets see the old table or the new one, and
// nothing anyone else added survives.
func (f *Forwarder) full(desired ruleSet, nodes map[netip.Addr]netip.Addr) *Transaction {
	tx := &Transaction{ops: make([]op, 0, 40+len(desired.targets)+len(nodes)+len(f.loose))}
	tx.add(op{kind: opAddTable})
	tx.add(op{kind: opDeleteTable})
	tx.add(op{kind: opCreateTable})
	for _, s := range sets() {
		tx.add(op{kind: opAddSet, set: &s})
	}
	for _, c := range f.chains() {
		tx.add(op{kind: opAddChain, chain: &c})
		for _, r := range c.rules {
			tx.add(op{kind: opAddRule, chain: &c, rule: &r})
		}
	}
	for _, a := range sortedAddrs(nodes) {
		tx.add(op{kind: opAddElement, elem: nodeElement(a, nodes[a])})
	}
	addRules(tx, desired, sortedKeys(desired))
	loose := slices.Collect(maps.Keys(f.loose))
	slices.SortFunc(loose, compareElements)
	for _, e := range loose {
		tx.add(op{kind: opAddElement, elem: e})
	}
	return tx
}

// addRules adds the elements of rules keys of desired to tx: port map
// elements first, then source range elements, so that consecutive
// operations on one set share a message.
func addRules(tx *Transaction, desired ruleSet, keys []key) {
	var later []element
	for _, k := range keys {
		es := desired.elements(k)
		tx.add(op{kind: opAddElement, elem: es[0]})
		later = append(later, es[1:]...)
	}
	slices.SortStableFunc(later, func(a, b element) int { return strings.Compare(a.set, b.set) })
	for _, e := range later {
		tx.add(op{kind: opAddElement, elem: e})
	}
}

// incremental returns the element operations turning f.applied into
// desired (whose addresses go to nodes), or none if they are equal: it
// changes the port elements of the rules that changed, and the node
// elements of addresses that appeared, went or moved to another node IP.
//
// The operations need no read of the table and reach desired even if an
// element to delete is already gone or one to add is already there: each
// element to delete is first added with the value last written (a no-op if
// it is there, so the delete cannot fail for want of it), and adding an
// element that holds the same value is not an error. What still fails the
// batch is real drift: the table or a map gone, or an element holding a
// value Berth did not write; Sync then rewrites the table. Check catches
// the rest (a flushed chain, foreign elements).
func (f *Forwarder) incremental(desired ruleSet, nodes map[netip.Addr]netip.Addr) []ElementOp {
	delPorts, addPorts := changedKeys(f.applied, desired)
	delNodes, addNodes := diff(f.appliedNodes, nodes)
	if len(delPorts)+len(addPorts)+len(delNodes)+len(addNodes) == 0 {
		return nil
	}
	slices.SortFunc(delPorts, compareKeys)
	slices.SortFunc(addPorts, compareKeys)
	slices.SortFunc(delNodes, netip.Addr.Compare)
	slices.SortFunc(addNodes, netip.Addr.Compare)
	ops := make([]ElementOp, 0, 2*(len(delPorts)+len(delNodes))+len(addPorts)+len(addNodes))
	var old, oldRanges []element
	for _, k := range delPorts {
		es := f.applied.elements(k)
		old, oldRanges = append(old, es[0]), append(oldRanges, es[1:]...)
	}
	for _, a := range delNodes {
		old = append(old, nodeElement(a, f.appliedNodes[a]))
	}
	slices.SortStableFunc(oldRanges, func(a, b element) int { return strings.Compare(a.set, b.set) })
	old = append(old, oldRanges...)
	for _, e := range old {
		ops = append(ops, ElementOp{Element: e})
	}
	for _, e := range old {
		ops = append(ops, ElementOp{Delete: true, Element: e})
	}
	for _, a := range addNodes {
		ops = append(ops, ElementOp{Element: nodeElement(a, nodes[a])})
	}
	tx := &Transaction{}
	addRules(tx, desired, addPorts)
	for _, o := range tx.ops {
		ops = append(ops, ElementOp{Element: o.elem})
	}
	return ops
}

// diff returns the keys of old that are missing from new or hold another
// value there, and the keys of new that are missing from old or hold another
// value there.
func diff[K, V comparable](old, new map[K]V) (del, add []K) {
	for k, v := range old {
		if nv, ok := new[k]; !ok || nv != v {
			del = append(del, k)
		}
	}
	for k, v := range new {
		if ov, ok := old[k]; !ok || ov != v {
			add = append(add, k)
		}
	}
	return del, add
}

// sortedAddrs returns the keys of m in order.
func sortedAddrs(m map[netip.Addr]netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
