package speaker

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/l2"
)

// l2Step is what one sync changes on layer 2, decided from the plan and
// the state alone (no I/O): what to tell the Responder, which addresses
// are gained and lost, and which speakers to forget.
type l2Step struct {
	// owns is what the Responder answers for: handover-only addresses
	// quiet, each with its interfaces.
	owns map[netip.Addr]l2.Ownership
	// keep is owns narrowed to what was owned before, set first when the
	// lease generation changed (see applyL2); nil otherwise.
	keep map[netip.Addr]l2.Ownership
	// gained are the addresses newly answered for, sorted, each with its
	// Service ("" if none); lost those no longer answered for.
	gained []l2Gain
	lost   []netip.Addr
	// gone are known speakers that are neither members nor Nodes any
	// more.
	gone []string
}

// l2Gain is an address newly answered for and its Service.
type l2Gain struct {
	addr    netip.Addr
	service string
}

// decideL2 computes the step from the addresses wanted (answerSet's
// result), the plan, what was owned before (owned, under lease generation
// applied), the snapshot's lease generation, the known speakers and the
// snapshot.
func decideL2(want, owned map[netip.Addr]bool, p *Plan, applied uint64, known []string, snap Snapshot) l2Step {
	var st l2Step
	list := make([]netip.Addr, 0, len(want))
	for a := range want {
		list = append(list, a)
	}
	slices.SortFunc(list, netip.Addr.Compare)
	st.owns = ownerships(list, p)
	if snap.L2.Lease != applied {
		st.keep = map[netip.Addr]l2.Ownership{}
		for a, o := range st.owns {
			if owned[a] {
				st.keep[a] = o
			}
		}
	}
	services := map[netip.Addr]string{}
	for _, e := range p.L2 {
		services[e.Addr] = e.Service
	}
	for a := range owned {
		if !want[a] {
			st.lost = append(st.lost, a)
		}
	}
	slices.SortFunc(st.lost, netip.Addr.Compare)
	for _, a := range list {
		if !owned[a] {
			st.gained = append(st.gained, l2Gain{addr: a, service: services[a]})
		}
	}
	st.gone = goneSpeakers(known, snap.L2.Members, snap.Nodes)
	return st
}

// ownerships is what the Responder answers for, given the addresses
// answered for (sorted) and the plan. Addresses kept only for a handover
// are answered but not announced: the new owner announces them, and this
// node's gratuitous ARPs (a burst still under way from a recent gain) must
// not take its clients back.
func ownerships(list []netip.Addr, p *Plan) map[netip.Addr]l2.Ownership {
	owns := make(map[netip.Addr]l2.Ownership, len(list))
	for _, a := range list {
		owns[a] = l2.Ownership{Quiet: true}
	}
	for _, a := range p.L2Owned {
		if _, ok := owns[a]; ok {
			owns[a] = l2.Ownership{}
		}
	}
	for _, e := range p.L2 {
		if o, ok := owns[e.Addr]; ok {
			o.Interfaces = e.Interfaces
			owns[e.Addr] = o
		}
	}
	return owns
}

// goneSpeakers are the known speakers that are neither alive members nor
// Nodes any more: they stop counting against the quorum. Level-triggered,
// so a deletion missed while the speaker was down is caught too.
func goneSpeakers(known, members []string, nodes []*corev1.Node) []string {
	names := map[string]bool{}
	for _, n := range nodes {
		names[n.Name] = true
	}
	var gone []string
	for _, k := range known {
		if !names[k] && !slices.Contains(members, k) {
			gone = append(gone, k)
		}
	}
	return gone
}
