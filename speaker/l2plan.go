package speaker

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/l2"
)

// L2View is this node's view of the speakers' membership, the input that
// makes layer-2 ownership independent of the API server.
type L2View struct {
	// Members are the live speakers, by node name (l2.Members.Members);
	// nil when layer 2 is off or its membership has not started, in
	// which case no node owns anything.
	Members []string
	// Quorate is l2.Members.Quorate: without it this node answers for
	// nothing (see l2/doc.go).
	Quorate bool
	// Lease is the generation of the lease Quorate was read under
	// (l2.Members.Lease).
	Lease uint64
}

// L2Address is one Service address announced on layer 2.
type L2Address struct {
	Addr netip.Addr
	// Service is the first Service ("ns/name", oldest first) with Addr.
	Service string
	// Eligible are the nodes that may answer for Addr by the API's view
	// (Ready, schedulable, not excluded, selected by an advertisement,
	// and with a ready local endpoint for externalTrafficPolicy: Local),
	// sorted.
	Eligible []string
	// Interfaces are the advertisements' interface names or patterns;
	// nil means every interface.
	Interfaces []string
	// Withheld are the eligible live members that published that they
	// cannot forward Addr (Snapshot.CannotForward), sorted: they are not
	// candidates for it.
	Withheld []string
	// Owner is l2.Owner over the candidates, Eligible ∩ L2View.Members
	// minus Withheld (see l2Candidates): the node that answers, "" when
	// none may.
	Owner string
}

// l2Candidates returns the nodes that may own addr, and those left out
// only because they published that they cannot forward it: the eligible
// nodes that are live members, minus the pairs (node, addr) of cannot.
// It is the one rule by which every speaker reads the others' forwarding
// into ownership, so that all of them, with the same membership and the
// same BerthNodeStatus objects, pick the same owner.
func l2Candidates(addr netip.Addr, eligible []string, live map[string]bool, cannot map[string]map[netip.Addr]bool) (candidates, withheld []string) {
	for _, n := range eligible {
		switch {
		case !live[n]:
		case cannot[n][addr]:
			withheld = append(withheld, n)
		default:
			candidates = append(candidates, n)
		}
	}
	return candidates, withheld
}

// computeL2 plans layer-2 ownership for every address a BerthL2Advertisement
// selects, and returns the addresses this node answers for (those it owns,
// and only while its membership is quorate) and those it is left out of
// only because it published that it cannot forward them: it keeps trying
// to forward those, so that it learns when its forwarding is repaired.
func computeL2(s Snapshot) (out []L2Address, owned, retry []netip.Addr) {
	if len(s.L2Advs) == 0 || s.Node == nil {
		return nil, nil, nil
	}
	cfg := config.For(s.Pools)
	poolLabels := map[string]map[string]string{}
	for _, pool := range s.Pools {
		poolLabels[pool.Name] = pool.Labels
	}
	advs := slices.Clone(s.L2Advs)
	slices.SortFunc(advs, func(a, b *v1alpha1.BerthL2Advertisement) int { return strings.Compare(a.Name, b.Name) })
	var nodes []*corev1.Node
	for _, n := range s.Nodes {
		if ok, _ := eligible(n); ok {
			nodes = append(nodes, n)
		}
	}
	local := endpointNodes(s.Slices)
	live := map[string]bool{}
	for _, m := range s.L2.Members {
		live[m] = true
	}

	type entry struct {
		L2Address
		eligible map[string]bool
		allIfs   bool
	}
	byAddr := map[netip.Addr]*entry{}
	var order []netip.Addr
	for _, svc := range s.Services {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		key := config.Key(svc)
		etpLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		for _, addr := range config.CurrentAddresses(svc) {
			poolName, ok := cfg.PoolFor(addr)
			if !ok {
				continue
			}
			for _, adv := range advs {
				sel := &adv.Spec.AdvertisementSelector
				if !config.AdvertisementAdmits(sel, poolName, poolLabels[poolName], svc, s.Namespaces[svc.Namespace]) {
					continue
				}
				e, ok := byAddr[addr]
				if !ok {
					e = &entry{L2Address: L2Address{Addr: addr, Service: key}, eligible: map[string]bool{}}
					byAddr[addr] = e
					order = append(order, addr)
				}
				if len(adv.Spec.Interfaces) == 0 {
					e.allIfs = true
				}
				for _, i := range adv.Spec.Interfaces {
					if !slices.Contains(e.Interfaces, i) {
						e.Interfaces = append(e.Interfaces, i)
					}
				}
				for _, n := range nodes {
					if !selects(sel.NodeSelector, n.Labels) || (etpLocal && !local[key][n.Name]) {
						continue
					}
					e.eligible[n.Name] = true
				}
			}
		}
	}
	slices.SortFunc(order, netip.Addr.Compare)
	out = make([]L2Address, 0, len(order))
	for _, a := range order {
		e := byAddr[a]
		for n := range e.eligible {
			e.Eligible = append(e.Eligible, n)
		}
		slices.Sort(e.Eligible)
		if e.allIfs {
			e.Interfaces = nil
		} else {
			slices.Sort(e.Interfaces)
		}
		var candidates []string
		candidates, e.Withheld = l2Candidates(a, e.Eligible, live, s.CannotForward)
		e.Owner = l2.Owner(a, candidates)
		if e.Owner == s.Node.Name && s.L2.Quorate {
			owned = append(owned, a)
		}
		if slices.Contains(e.Withheld, s.Node.Name) {
			retry = append(retry, a)
		}
		out = append(out, e.L2Address)
	}
	return out, owned, retry
}

// endpointNodes returns, per Service ("ns/name"), the nodes with a ready
// endpoint.
func endpointNodes(eps []*discoveryv1.EndpointSlice) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, es := range eps {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := es.Namespace + "/" + svc
		for _, ep := range es.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if ep.NodeName == nil || !ready {
				continue
			}
			if out[key] == nil {
				out[key] = map[string]bool{}
			}
			out[key][*ep.NodeName] = true
		}
	}
	return out
}
