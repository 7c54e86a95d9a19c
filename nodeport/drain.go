package nodeport

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/klog/v2"
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
	slices.SortStableFunc(ops, func(x, y ElementOp) int { return strings.Compare(x.Element.set, y.Element.set) })
	if err := f.nft.Run(ctx, elementTx(ops)); err != nil {
		f.state = stateDrifted
		klog.FromContext(ctx).WithName("nodeport").Info("Updating the drain sets failed; the next sync rewrites the table", "err", err)
		return nil
	}
	f.appliedDrain = want
	return nil
}
