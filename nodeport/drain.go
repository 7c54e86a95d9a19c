package nodeport

import (
	"cmp"
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
	var want []element
	for _, a := range addrs {
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() {
			return fmt.Errorf("invalid drain address %q", a)
		}
		want = append(want, drainElement(a.Unmap()))
	}
	return f.setLoose(ctx, "drain sets", element.isDrain, want)
}

// MembersPort is the membership port Members restricts, and its protocols.
type MembersPort struct {
	Port      uint16
	Protocols []Protocol
}

// Members restricts port (layer 2's membership port) to addrs, the
// cluster's node addresses: the table drops what reaches the port's
// protocols from any other source address, in the input hook, before any
// socket reads it (NetworkPolicy does not apply to a host-network pod).
// Port 0 lifts the restriction. Like Drain, it goes out as one element
// batch once the table is synced, and with the whole table otherwise.
func (f *Forwarder) Members(ctx context.Context, port MembersPort, addrs []netip.Addr) error {
	var want []element
	if port.Port != 0 {
		for _, p := range port.Protocols {
			if _, ok := p.number(); !ok {
				return fmt.Errorf("invalid membership protocol %q", p)
			}
			want = append(want, memberPortElement(p, port.Port))
		}
		for _, a := range addrs {
			if !a.IsValid() || a.Zone() != "" {
				return fmt.Errorf("invalid member address %q", a)
			}
			want = append(want, memberElement(a.Unmap()))
		}
	}
	return f.setLoose(ctx, "membership sets", func(e element) bool { return e.isMember() || e.set == memberPorts }, want)
}

// setLoose makes the elements of the sets mine tells apart hold exactly
// want, in one element batch.
func (f *Forwarder) setLoose(ctx context.Context, what string, mine func(element) bool, want []element) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	loose := make(map[element]bool, len(f.loose)+len(want))
	for e := range f.loose {
		if !mine(e) {
			loose[e] = true
		}
	}
	for _, e := range want {
		loose[e] = true
	}
	f.loose = loose
	if f.state != stateSynced {
		return nil
	}
	var ops []ElementOp
	for e := range f.appliedLoose {
		if !loose[e] {
			// Added first so that the delete cannot fail for want of it.
			ops = append(ops, ElementOp{Element: e}, ElementOp{Delete: true, Element: e})
		}
	}
	for e := range loose {
		if !f.appliedLoose[e] {
			ops = append(ops, ElementOp{Element: e})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	slices.SortStableFunc(ops, func(x, y ElementOp) int {
		return cmp.Or(strings.Compare(x.Element.set, y.Element.set), compareElements(x.Element, y.Element))
	})
	if err := f.nft.Run(ctx, elementTx(ops)); err != nil {
		f.state = stateDrifted
		klog.FromContext(ctx).WithName("nodeport").Info("Updating the "+what+" failed; the next sync rewrites the table", "err", err)
		return nil
	}
	f.appliedLoose = loose
	return nil
}

// compareElements orders elements by set, then key.
func compareElements(a, b element) int {
	return cmp.Or(strings.Compare(a.set, b.set), a.addr.Compare(b.addr), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
}
