package nodeport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// RefusedError reports rules the kernel refused: Sync programmed every
// other rule and leaves these out until a later Sync succeeds with them.
type RefusedError struct {
	// Rules are the refused rules, grouped by address: the kernel refuses
	// a batch as a whole, so Sync finds the addresses whose elements fail
	// and leaves out every rule of each.
	Rules []Rule
	// Err is what the kernel answered to the whole table.
	Err error
}

// Error implements error.
func (e *RefusedError) Error() string {
	names := make([]string, 0, min(len(e.Rules), 5))
	for _, r := range e.Rules[:min(len(e.Rules), 5)] {
		names = append(names, r.String())
	}
	if len(e.Rules) > 5 {
		names = append(names, fmt.Sprintf("and %d more", len(e.Rules)-5))
	}
	return fmt.Sprintf("the kernel refused %d forwarding rules (%s): %v", len(e.Rules), strings.Join(names, ", "), e.Err)
}

// Unwrap returns what the kernel answered.
func (e *RefusedError) Unwrap() error { return e.Err }

// IsRefused reports whether err (or an error it wraps or joins) is a
// *RefusedError.
func IsRefused(err error) bool {
	var e *RefusedError
	return errors.As(err, &e)
}

// ruleGroup is the elements of one address: its node map element and the
// elements of each of its rules.
type ruleGroup struct {
	addr netip.Addr
	keys []key
}

// isolate writes the table when the whole of it was refused: first the
// table without any rule (the drain and membership sets included; if the
// kernel refuses that, nothing can be forwarded and isolate fails), then
// the rules of every address, bisecting the addresses whose batch fails
// until each refused address is alone. It records what the table then
// holds and returns the refused rules.
//
// A refused address costs about 2·log2(addresses) batches; the rules of a
// Service share its addresses, so one Service's bad rule holds up no
// other Service's, save those sharing its address.
func (f *Forwarder) isolate(ctx context.Context, desired ruleSet, nodes map[netip.Addr]netip.Addr) ([]Rule, error) {
	if err := f.nft.Run(ctx, f.full(ruleSet{}, nil)); err != nil {
		return nil, fmt.Errorf("writing the table without rules: %w", err)
	}
	f.applied, f.appliedNodes, f.appliedLoose, f.state = newRuleSet(0), map[netip.Addr]netip.Addr{}, f.loose, stateSynced
	byAddr := map[netip.Addr]*ruleGroup{}
	var groups []*ruleGroup
	for _, k := range sortedKeys(desired) {
		g := byAddr[k.addr]
		if g == nil {
			g = &ruleGroup{addr: k.addr}
			byAddr[k.addr] = g
			groups = append(groups, g)
		}
		g.keys = append(g.keys, k)
	}
	var refused []Rule
	var try func([]*ruleGroup) error
	try = func(gs []*ruleGroup) error {
		tx := &Transaction{}
		var keys []key
		for _, g := range gs {
			tx.add(op{kind: opAddElement, elem: nodeElement(g.addr, nodes[g.addr])})
			keys = append(keys, g.keys...)
		}
		addRules(tx, desired, keys)
		err := f.nft.Run(ctx, tx)
		switch {
		case err == nil:
			for _, g := range gs {
				f.appliedNodes[g.addr] = nodes[g.addr]
				for _, k := range g.keys {
					f.applied.targets[k] = desired.targets[k]
					if rs, ok := desired.ranges[k]; ok {
						f.applied.ranges[k] = rs
					}
				}
			}
			return nil
		case ctx.Err() != nil:
			return err
		case len(gs) == 1:
			for _, k := range gs[0].keys {
				refused = append(refused, desired.rule(k))
			}
			return nil
		}
		half := len(gs) / 2
		return errors.Join(try(gs[:half]), try(gs[half:]))
	}
	if err := try(groups); err != nil {
		// The table holds what succeeded; the next Sync rewrites it.
		f.state = stateDrifted
		return nil, fmt.Errorf("writing the rules address by address: %w", err)
	}
	return refused, nil
}
