package nodeport

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"
)

// Check compares the table with what this Forwarder last wrote and reports
// whether someone else changed it: the table, a chain or a map deleted, a
// chain flushed or given other rules, map elements added, removed or
// changed. On drift it logs the reason and makes
// the next Sync rewrite the whole table. Before the first Sync, and after
// Cleanup, there is nothing to compare and Check reports no drift.
//
// Check runs ten nft list commands and reads every map and set element, so its cost
// grows with the number of rules (see doc.go); call it on a timer, not on
// every change.
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

// compare returns why the table differs from f.applied, or "" if it does not.
func (f *Forwarder) compare(ctx context.Context) (string, error) {
	for _, c := range chains() {
		rules, err := f.nft.ListRules(ctx, c.name)
		if knftables.IsNotFound(err) {
			return fmt.Sprintf("chain %s is missing", c.name), nil
		}
		if err != nil {
			return "", err
		}
		var comments []string
		for _, r := range rules {
			if r.Comment == nil {
				comments = append(comments, "")
			} else {
				comments = append(comments, *r.Comment)
			}
		}
		if want := c.comments(); !slices.Equal(comments, want) {
			return fmt.Sprintf("chain %s holds rules %q, want %q", c.name, comments, want), nil
		}
	}

	wantNodes := f.appliedNodes
	found := 0
	for _, fam := range families {
		elems, err := f.nft.ListElements(ctx, "map", fam.nodeMap)
		if knftables.IsNotFound(err) {
			return "map " + fam.nodeMap + " is missing", nil
		}
		if err != nil {
			return "", err
		}
		for _, e := range elems {
			addr, ip, err := parseNodeElement(e.Key, e.Value)
			if err != nil {
				return fmt.Sprintf("map %s: %v", fam.nodeMap, err), nil
			}
			if want, ok := wantNodes[addr]; !ok || want != ip || familyOf(addr).nodeMap != fam.nodeMap {
				return fmt.Sprintf("map %s holds unexpected element %v : %v", fam.nodeMap, e.Key, e.Value), nil
			}
			found++
		}
	}
	if found != len(wantNodes) {
		return fmt.Sprintf("node maps hold %d elements, want %d", found, len(wantNodes)), nil
	}

	found = 0
	for _, fam := range families {
		elems, err := f.nft.ListElements(ctx, "map", fam.portMap)
		if knftables.IsNotFound(err) {
			return "map " + fam.portMap + " is missing", nil
		}
		if err != nil {
			return "", err
		}
		for _, e := range elems {
			k, nodePort, err := parsePortElement(e.Key, e.Value)
			if err != nil {
				return fmt.Sprintf("map %s: %v", fam.portMap, err), nil
			}
			if t, ok := f.applied[k]; !ok || t.port != nodePort || familyOf(k.addr).portMap != fam.portMap {
				return fmt.Sprintf("map %s holds unexpected element %v : %v", fam.portMap, e.Key, e.Value), nil
			}
			found++
		}
	}
	if found != len(f.applied) {
		return fmt.Sprintf("port maps hold %d elements, want %d", found, len(f.applied)), nil
	}

	found = 0
	for _, fam := range families {
		elems, err := f.nft.ListElements(ctx, "set", fam.drainSet)
		if knftables.IsNotFound(err) {
			return "set " + fam.drainSet + " is missing", nil
		}
		if err != nil {
			return "", err
		}
		for _, e := range elems {
			a, err := parseDrainElement(fam.drainSet, e.Key)
			if err != nil || !f.appliedDrain[a] {
				return fmt.Sprintf("set %s holds unexpected element %v", fam.drainSet, e.Key), nil
			}
			found++
		}
	}
	if found != len(f.appliedDrain) {
		return fmt.Sprintf("drain sets hold %d elements, want %d", found, len(f.appliedDrain)), nil
	}
	return "", nil
}
