package nodeport

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"
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

	mu      sync.Mutex
	state   state
	applied ruleSet
}

// New returns a Forwarder that programs the table of nft. It writes nothing
// until the first Sync.
func New(nft NFT) *Forwarder {
	return &Forwarder{nft: nft}
}

// Sync makes the table forward exactly rules. Invalid rules make it fail
// before writing anything (see IsInvalidRule). The first call, and the first
// call after drift, writes the whole table in one transaction; later calls
// add and delete only the map elements that changed, in one transaction, and
// do nothing when nothing changed. An incremental update that fails is
// logged and followed at once by a full rewrite.
func (f *Forwarder) Sync(ctx context.Context, rules []Rule) error {
	desired, err := validate(rules)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	logger := klog.FromContext(ctx).WithName("nodeport")

	if f.state == stateSynced {
		tx := f.incremental(desired)
		if tx == nil {
			return nil
		}
		err := f.nft.Run(ctx, tx)
		if err == nil {
			f.applied = desired
			return nil
		}
		f.state = stateDrifted
		if ctx.Err() != nil {
			return fmt.Errorf("updating nftables table: %w", err)
		}
		logger.Info("Incremental nftables update failed, the table was changed by someone else; rewriting it", "err", err)
	}
	if f.state == stateDrifted {
		logger.Info("Rewriting drifted nftables table", "rules", len(desired))
	}
	if err := f.nft.Run(ctx, f.full(desired)); err != nil {
		return fmt.Errorf("writing nftables table: %w", err)
	}
	f.applied, f.state = desired, stateSynced
	return nil
}

// Cleanup deletes the table, if it exists. A later Sync writes it afresh.
func (f *Forwarder) Cleanup(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	tx := f.nft.NewTransaction()
	// Adding first makes the delete succeed whether or not the table exists.
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	if err := f.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("deleting nftables table: %w", err)
	}
	f.state, f.applied = stateUnknown, nil
	return nil
}

// full returns a transaction that replaces the whole table with desired.
// Deleting and re-adding the table inside one transaction is atomic: packets
// see the old table or the new one, and nothing anyone else added survives.
func (f *Forwarder) full(desired ruleSet) *knftables.Transaction {
	tx := f.nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo(tableComment)})
	for _, m := range maps() {
		tx.Add(m)
	}
	for _, c := range chains() {
		tx.Add(&knftables.Chain{Name: c.name, Type: knftables.PtrTo(c.typ),
			Hook: knftables.PtrTo(c.hook), Priority: knftables.PtrTo(c.priority)})
		for _, r := range c.rules {
			r := *r
			r.Chain = c.name
			tx.Add(&r)
		}
	}
	nodes := nodesOf(desired)
	for _, a := range sortedAddrs(nodes) {
		tx.Add(nodeElement(a, nodes[a]))
	}
	for _, k := range sortedKeys(desired) {
		tx.Add(portElement(k, desired[k].port))
	}
	return tx
}

// incremental returns a transaction turning f.applied into desired, or nil
// if they are equal: it changes the port elements of the rules that
// changed, and the node elements of addresses that appeared, went or moved
// to another node IP. If the table or a map is gone, or an element to
// delete is missing, nft aborts the whole transaction and Sync rewrites the
// table. It holds no guard that would catch other drift at once (a flushed
// chain, foreign elements): with nft 1.0.6 any "delete element" or "flush
// set", even on a one-element set, makes nft read every element of the
// table first, which would add ~10 ms at 10,000 rules to every change.
// Check catches the rest.
func (f *Forwarder) incremental(desired ruleSet) *knftables.Transaction {
	delPorts, addPorts := diff(portsOf(f.applied), portsOf(desired))
	delNodes, addNodes := diff(nodesOf(f.applied), nodesOf(desired))
	if len(delPorts)+len(addPorts)+len(delNodes)+len(addNodes) == 0 {
		return nil
	}
	slices.SortFunc(delPorts, compareKeys)
	slices.SortFunc(addPorts, compareKeys)
	slices.SortFunc(delNodes, netip.Addr.Compare)
	slices.SortFunc(addNodes, netip.Addr.Compare)
	tx := f.nft.NewTransaction()
	for _, k := range delPorts {
		tx.Delete(&knftables.Element{Map: familyOf(k.addr).portMap, Key: portElement(k, 0).Key})
	}
	for _, a := range delNodes {
		tx.Delete(&knftables.Element{Map: familyOf(a).nodeMap, Key: []string{a.String()}})
	}
	nodes := nodesOf(desired)
	for _, a := range addNodes {
		tx.Add(nodeElement(a, nodes[a]))
	}
	for _, k := range addPorts {
		tx.Add(portElement(k, desired[k].port))
	}
	return tx
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
