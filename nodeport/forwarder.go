package nodeport

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"
)

// Names of the objects in the table.
const (
	map4           = "svc4"
	map6           = "svc6"
	preroutingName = "prerouting"
	outputName     = "output"
	tableComment   = "berth: LoadBalancer address to NodePort; managed by berth-speaker, do not edit"
)

// chainPriority puts the DNAT just after the standard dstnat priority, so a
// proxy that already handles load-balancer addresses itself (kube-proxy at
// dstnat) keeps doing so and these rules only catch what it leaves alone.
const chainPriority = knftables.DNATPriority + "+10"

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
	tx.Add(&knftables.Map{Name: map4,
		Type: "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service"})
	tx.Add(&knftables.Map{Name: map6,
		Type: "ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service"})
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
	}{{preroutingName, knftables.PreroutingHook}, {outputName, knftables.OutputHook}} {
		tx.Add(&knftables.Chain{Name: c.name, Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(c.hook), Priority: knftables.PtrTo(chainPriority)})
		for _, r := range chainRules(c.name) {
			tx.Add(r)
		}
	}
	for _, k := range sortedKeys(desired) {
		tx.Add(mapElement(k, desired[k]))
	}
	return tx
}

// chainRules returns the two rules each chain holds. Without a matching map
// element the lookup fails and the packet goes on untouched.
func chainRules(chain string) []*knftables.Rule {
	return []*knftables.Rule{
		{Chain: chain, Comment: knftables.PtrTo(map4),
			Rule: "dnat ip to ip daddr . meta l4proto . th dport map @" + map4},
		{Chain: chain, Comment: knftables.PtrTo(map6),
			Rule: "dnat ip6 to ip6 daddr . meta l4proto . th dport map @" + map6},
	}
}

// incremental returns a transaction turning f.applied into desired, or nil
// if they are equal. If the table or a map is gone, or an element to delete
// is missing, nft aborts the whole transaction and Sync rewrites the table.
// It holds no guard that would catch other drift at once (a flushed chain,
// foreign elements): with nft 1.0.6 any "delete element" or "flush set",
// even on a one-element set, makes nft read every element of the table
// first, which would add ~10 ms at 10,000 rules to every change. Check
// catches the rest.
func (f *Forwarder) incremental(desired ruleSet) *knftables.Transaction {
	var del, add []key
	for k, t := range f.applied {
		if dt, ok := desired[k]; !ok || dt != t {
			del = append(del, k)
		}
	}
	for k, t := range desired {
		if at, ok := f.applied[k]; !ok || at != t {
			add = append(add, k)
		}
	}
	if len(del) == 0 && len(add) == 0 {
		return nil
	}
	slices.SortFunc(del, compareKeys)
	slices.SortFunc(add, compareKeys)
	tx := f.nft.NewTransaction()
	for _, k := range del {
		tx.Delete(&knftables.Element{Map: mapFor(k.addr), Key: elementKey(k)})
	}
	for _, k := range add {
		tx.Add(mapElement(k, desired[k]))
	}
	return tx
}

func mapElement(k key, t target) *knftables.Element {
	return &knftables.Element{Map: mapFor(k.addr), Key: elementKey(k), Value: elementValue(t)}
}
