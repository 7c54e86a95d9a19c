package nodeport

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"
)

// Drain makes the drain sets hold exactly addrs: addresses this node took
// over from another during a planned move, whose mid-stream TCP packets of
// connections it does not know are routed (to the old owner, by a route
// the caller installs) instead of forwarded to the local NodePort. See
// drainRules.
//
// Once the table is synced the change goes out as one element batch; before
// that, or after drift, the next Sync writes it with the whole table. A
// batch that fails makes the next Sync rewrite the table.
func (f *Forwarder) Drain(ctx context.Context, addrs []netip.Addr) error {
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() {
			return fmt.Errorf("invalid drain address %q", a)
		}
		want[a.Unmap()] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drain = want
	if f.state != stateSynced {
		return nil
	}
	var ops []ElementOp
	for a := range f.appliedDrain {
		if !want[a] {
			// Added first so that the delete cannot fail for want of it.
			ops = append(ops, ElementOp{Element: drainElement(a)}, ElementOp{Delete: true, Element: drainElement(a)})
		}
	}
	for a := range want {
		if !f.appliedDrain[a] {
			ops = append(ops, ElementOp{Element: drainElement(a)})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	slices.SortStableFunc(ops, func(x, y ElementOp) int { return strings.Compare(x.Element.Set, y.Element.Set) })
	if err := f.nft.UpdateElements(ctx, ops); err != nil {
		f.state = stateDrifted
		klog.FromContext(ctx).WithName("nodeport").Info("Updating the drain sets failed; the next sync rewrites the table", "err", err)
		return nil
	}
	f.appliedDrain = want
	return nil
}

// drainElement spells a as an element of its family's drain set: the
// set is typed by raw payload, so nft spells its elements as integers, the
// address's bytes in network order.
func drainElement(a netip.Addr) *knftables.Element {
	return &knftables.Element{Set: familyOf(a).drainSet, Key: []string{"0x" + hex.EncodeToString(a.AsSlice())}}
}

// parseDrainElement is the inverse of drainElement; nft drops leading
// zeros.
func parseDrainElement(set string, keyFields []string) (netip.Addr, error) {
	size := 4
	if set == drainSet6 {
		size = 16
	}
	if len(keyFields) != 1 {
		return netip.Addr{}, fmt.Errorf("unexpected element %v", keyFields)
	}
	h, ok := strings.CutPrefix(keyFields[0], "0x")
	if !ok || len(h) > 2*size {
		return netip.Addr{}, fmt.Errorf("unexpected element %v", keyFields)
	}
	b, err := hex.DecodeString(strings.Repeat("0", 2*size-len(h)) + h)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("unexpected element %v: %w", keyFields, err)
	}
	a, _ := netip.AddrFromSlice(b)
	return a, nil
}
