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
	live := map[string]bool{}
	for _, m := range s.L2.Members {
		live[m] = true
	}
	entries := l2Entries(s)
	out = make([]L2Address, 0, len(entries))
	for _, e := range entries {
		e.finish(live, s.CannotForward)
		if e.Owner == s.Node.Name && s.L2.Quorate {
			owned = append(owned, e.Addr)
		}
		if slices.Contains(e.Withheld, s.Node.Name) {
			retry = append(retry, e.Addr)
		}
		out = append(out, e.L2Address)
	}
	return out, owned, retry
}

// l2Entry gathers what the advertisements selecting one address say of it.
type l2Entry struct {
	L2Address
	eligible map[string]bool
	// allIfs: an advertisement names no interface, so every one is used.
	allIfs bool
}

// admit adds what adv says: its interfaces, and the nodes (eligible by the
// API's view) that it selects and that may serve the Service (local: with
// externalTrafficPolicy Local, only nodes with a ready endpoint; nil
// otherwise).
func (e *l2Entry) admit(adv *v1alpha1.BerthL2Advertisement, nodes []*corev1.Node, local map[string]bool) {
	if len(adv.Spec.Interfaces) == 0 {
		e.allIfs = true
	}
	for _, i := range adv.Spec.Interfaces {
		if !slices.Contains(e.Interfaces, i) {
			e.Interfaces = append(e.Interfaces, i)
		}
	}
	for _, n := range nodes {
		if selects(adv.Spec.NodeSelector, n.Labels) && (local == nil || local[n.Name]) {
			e.eligible[n.Name] = true
		}
	}
}

// finish sorts what admit gathered and picks the owner among the live
// eligible nodes that did not publish that they cannot forward it.
func (e *l2Entry) finish(live map[string]bool, cannot map[string]map[netip.Addr]bool) {
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
	candidates, e.Withheld = l2Candidates(e.Addr, e.Eligible, live, cannot)
	e.Owner = l2.Owner(e.Addr, candidates)
}

// l2Entries gathers, for every address of a LoadBalancer Service in a pool
// that a BerthL2Advertisement selects, what the advertisements say,
// sorted by address. An address is the first Service's (s.Services' order).
func l2Entries(s Snapshot) []*l2Entry {
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
	endpoints := endpointNodes(s.Slices)
	byAddr := map[netip.Addr]*l2Entry{}
	var entries []*l2Entry
	for _, svc := range s.Services {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		key := config.Key(svc)
		var local map[string]bool
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			local = endpoints[key]
			if local == nil {
				local = map[string]bool{}
			}
		}
		for _, addr := range config.CurrentAddresses(svc) {
			poolName, ok := cfg.PoolFor(addr)
			if !ok {
				continue
			}
			for _, adv := range advs {
				if !config.AdvertisementAdmits(&adv.Spec.AdvertisementSelector, poolName, poolLabels[poolName], svc, s.Namespaces[svc.Namespace]) {
					continue
				}
				e, ok := byAddr[addr]
				if !ok {
					e = &l2Entry{L2Address: L2Address{Addr: addr, Service: key}, eligible: map[string]bool{}}
					byAddr[addr] = e
					entries = append(entries, e)
				}
				e.admit(adv, nodes, local)
			}
		}
	}
	slices.SortFunc(entries, func(a, b *l2Entry) int { return a.Addr.Compare(b.Addr) })
	return entries
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
