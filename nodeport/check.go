package nodeport

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/klog/v2"
)

// Check compares the table with what this Forwarder last wrote and reports
// whether someone else changed it: the table, a chain or a map deleted, a
// chain flushed or given other rules, map elements added, removed or
// changed. On drift it logs the reason and makes
// the next Sync rewrite the whole table. Before the first Sync, and after
// Cleanup, there is nothing to compare and Check reports no drift.
//
// Check reads the table's chains, its rules and every map and set element
// over netlink, so its cost grows with the number of rules (see doc.go);
// call it on a timer, not on every change.
func (f *Forwarder) Check(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch f.state {
	case stateUnknown:
		return false, nil
	case stateDrifted:
		return true, nil
	}
	reason, err := f.compare(ctx)
	if err != nil {
		return false, fmt.Errorf("checking nftables table: %w", err)
	}
	if reason == "" {
		return false, nil
	}
	klog.FromContext(ctx).WithName("nodeport").Info("nftables table was changed by someone else; the next sync rewrites it", "reason", reason)
	f.state = stateDrifted
	return true, nil
}

// compare returns why the table differs from f.applied, or "" if it does
// not.
func (f *Forwarder) compare(ctx context.Context) (string, error) {
	l, err := f.nft.List(ctx)
	if err != nil {
		return "", err
	}
	for _, c := range f.chains() {
		got, ok := l.Chains[c.name]
		if !ok {
			return fmt.Sprintf("chain %s is missing", c.name), nil
		}
		if got.Type != c.typ || got.Hook != c.hook || got.Priority != c.priority {
			return fmt.Sprintf("chain %s is of type %s hook %d priority %d, want %s hook %d priority %d",
				c.name, got.Type, got.Hook, got.Priority, c.typ, c.hook, c.priority), nil
		}
		if want := c.comments(); !slices.Equal(got.Comments, want) {
			return fmt.Sprintf("chain %s holds rules %q, want %q", c.name, got.Comments, want), nil
		}
	}
	// want holds the expected elements of every set, as the kernel
	// stores them.
	want := make(map[string]map[string]string, len(sets()))
	for _, s := range sets() {
		want[s.name] = map[string]string{}
	}
	expect := func(e element) {
		k, v, end := e.encode()
		want[e.set][string(k)] = string(v) + string(end)
	}
	for a, ip := range f.appliedNodes {
		expect(nodeElement(a, ip))
	}
	for k := range f.applied.targets {
		for _, e := range f.applied.elements(k) {
			expect(e)
		}
	}
	for e := range f.appliedLoose {
		expect(e)
	}
	for _, s := range sets() {
		elems, ok := l.Sets[s.name]
		if !ok {
			return fmt.Sprintf("%s %s is missing", s.kind, s.name), nil
		}
		for _, e := range elems {
			if v, ok := want[s.name][string(e.Key)]; !ok || v != string(e.Value)+string(e.KeyEnd) {
				return fmt.Sprintf("%s %s holds unexpected element %s", s.kind, s.name, describe(s.name, e)), nil
			}
		}
		if len(elems) != len(want[s.name]) {
			return fmt.Sprintf("%s %s holds %d elements, want %d", s.kind, s.name, len(elems), len(want[s.name])), nil
		}
	}
	return "", nil
}

// describe spells a listed element as nft would, or in hex if it is not
// one Berth could have written.
func describe(set string, e ListedElement) string {
	if d, err := decodeElement(set, e.Key, e.Value, e.KeyEnd); err == nil {
		return d.String()
	}
	return fmt.Sprintf("%x-%x : %x", e.Key, e.KeyEnd, e.Value)
}
