package speaker

import (
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DefaultDrain is how long a node that took an address over in a planned
// move routes the mid-stream TCP packets of connections it does not know
// to the address's previous owner (see docs/layer2.md).
const DefaultDrain = 30 * time.Second

// drain is one address this node took over from a node that is still
// alive: until the drain ends, packets of the old owner's established
// connections are routed to it.
type drain struct {
	// node is the previous owner, via its InternalIP of the address's
	// family.
	node  string
	via   netip.Addr
	until time.Time
}

// nextDrains returns the drains of this node after a sync, and when the next
// one ends (zero if none). prev holds each address's owner by the previous
// plan, cur the drains so far.
//
// An address starts draining when this node owns it now, another node owned
// it before, and that node is still a live member with an InternalIP of the
// address's family: a planned move (cordon, exclusion, a node joining). A
// previous owner that is not live is an unplanned failover, with no state
// left to drain to. A drain ends at its time, or as soon as this node no
// longer owns the address or the old owner stops being live.
func nextDrains(cur map[netip.Addr]drain, prev map[netip.Addr]string, self string, p *Plan, members []string, nodes []*corev1.Node, now time.Time, window time.Duration) (map[netip.Addr]drain, time.Duration) {
	out := map[netip.Addr]drain{}
	if window <= 0 {
		return out, 0
	}
	var next time.Duration
	keep := func(a netip.Addr, d drain) {
		left := d.until.Sub(now)
		if left <= 0 {
			return
		}
		out[a] = d
		if next == 0 || left < next {
			next = left
		}
	}
	for _, a := range p.L2Owned {
		if d, ok := cur[a]; ok {
			if slices.Contains(members, d.node) {
				keep(a, d)
			}
			continue
		}
		old := prev[a]
		if old == "" || old == self || !slices.Contains(members, old) {
			continue
		}
		if via := nodeIPOf(nodes, old, a.Is4()); via.IsValid() {
			keep(a, drain{node: old, via: via, until: now.Add(window)})
		}
	}
	return out, next
}

// nodeIPOf returns the first InternalIP of the named node in the given
// family, or the zero Addr.
func nodeIPOf(nodes []*corev1.Node, name string, v4 bool) netip.Addr {
	for _, n := range nodes {
		if n.Name == name {
			return internalIPs(n)[v4]
		}
	}
	return netip.Addr{}
}

// owners returns each address's owner by p ("" for none).
func owners(p *Plan) map[netip.Addr]string {
	out := make(map[netip.Addr]string, len(p.L2))
	for _, e := range p.L2 {
		out[e.Addr] = e.Owner
	}
	return out
}

// drainTargets returns the drained addresses with the node IP each is
// routed to.
func drainTargets(ds map[netip.Addr]drain) map[netip.Addr]netip.Addr {
	out := make(map[netip.Addr]netip.Addr, len(ds))
	for a, d := range ds {
		out[a] = d.via
	}
	return out
}
