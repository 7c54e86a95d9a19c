package status

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// Snapshot is what the report is computed from, read from the cluster.
type Snapshot struct {
	Pools   []v1alpha1.BerthIPPool
	Peers   []v1alpha1.BerthBGPPeer
	BGPAdvs []v1alpha1.BerthBGPAdvertisement
	L2Advs  []v1alpha1.BerthL2Advertisement
	// Nodes are the speakers' BerthNodeStatuses.
	Nodes []v1alpha1.BerthNodeStatus
	// Namespaces are the namespaces' labels, read only when an
	// advertisement has a namespaceSelector.
	Namespaces map[string]labels.Set
}

// usesNamespaceSelector reports whether an advertisement selects
// namespaces by label.
func (s Snapshot) usesNamespaceSelector() bool {
	for i := range s.BGPAdvs {
		if s.BGPAdvs[i].Spec.NamespaceSelector != nil {
			return true
		}
	}
	for i := range s.L2Advs {
		if s.L2Advs[i].Spec.NamespaceSelector != nil {
			return true
		}
	}
	return false
}

// Address is what the cluster does with one of a Service's addresses.
type Address struct {
	Addr netip.Addr
	// Pool is the BerthIPPool holding it; empty if none does.
	Pool string
	// BGP are the nodes announcing it over BGP, each with the peers
	// whose sessions carry it.
	BGP []Announcer
	// L2 are the nodes answering ARP or NDP for it (one, but for a
	// moment during a move).
	L2 []string
	// Withheld are the nodes not announcing it because their forwarding
	// for it is not in place.
	Withheld []Withheld
	// Verdict says in one sentence whether and how it is reachable.
	Verdict string
}

// Announcer is a node announcing an address over BGP.
type Announcer struct {
	Node string
	// Peers are the peers with an Established session that the
	// address's advertisements allow; Down the others of the node.
	Peers, Down []string
}

// Withheld is a node withholding an address.
type Withheld struct {
	Node, Reason string
}

// Analyze says, for each of svc's addresses, who announces it and whether
// it is reachable.
func Analyze(snap Snapshot, svc *corev1.Service) []Address {
	var pools []*v1alpha1.BerthIPPool
	poolLabels := map[string]labels.Set{}
	for i := range snap.Pools {
		pools = append(pools, &snap.Pools[i])
		poolLabels[snap.Pools[i].Name] = snap.Pools[i].Labels
	}
	cfg := config.For(pools)
	var out []Address
	for _, a := range config.CurrentAddresses(svc) {
		r := Address{Addr: a}
		r.Pool, _ = cfg.PoolFor(a)
		bgpAdvs, l2Advs := admitting(snap, r.Pool, poolLabels[r.Pool], svc)
		for _, n := range snap.Nodes {
			st := &n.Status
			if announces(st.BGP, a) {
				r.BGP = append(r.BGP, announcer(n.Name, st.Sessions, snap.Peers, bgpAdvs, a))
			}
			if slices.Contains(st.L2, a.String()) {
				r.L2 = append(r.L2, n.Name)
			}
			for _, w := range st.Withheld {
				if w.Address == a.String() {
					r.Withheld = append(r.Withheld, Withheld{Node: n.Name, Reason: w.Reason})
				}
			}
		}
		r.Verdict = verdict(r, svc, len(bgpAdvs)+len(l2Advs) > 0)
		out = append(out, r)
	}
	return out
}

// admitting returns the BGP and layer-2 advertisements that apply to an
// address of svc from pool.
func admitting(snap Snapshot, pool string, poolLabels labels.Set, svc *corev1.Service) (bgp []*v1alpha1.BerthBGPAdvertisement, l2 []*v1alpha1.BerthL2Advertisement) {
	if pool == "" {
		return nil, nil
	}
	for i := range snap.BGPAdvs {
		if config.AdvertisementAdmits(&snap.BGPAdvs[i].Spec.AdvertisementSelector, pool, poolLabels, svc, snap.Namespaces[svc.Namespace]) {
			bgp = append(bgp, &snap.BGPAdvs[i])
		}
	}
	for i := range snap.L2Advs {
		if config.AdvertisementAdmits(&snap.L2Advs[i].Spec.AdvertisementSelector, pool, poolLabels, svc, snap.Namespaces[svc.Namespace]) {
			l2 = append(l2, &snap.L2Advs[i])
		}
	}
	return bgp, l2
}

// announcer lists the node's peers that carry addr: sessions to peers
// that carry addr's family (MP-BGP included) and that one of advs allows.
func announcer(node string, sessions []v1alpha1.BerthBGPSession, peers []v1alpha1.BerthBGPPeer, advs []*v1alpha1.BerthBGPAdvertisement, addr netip.Addr) Announcer {
	r := Announcer{Node: node}
	for _, s := range sessions {
		i := slices.IndexFunc(peers, func(p v1alpha1.BerthBGPPeer) bool { return p.Name == s.Peer })
		if i < 0 {
			continue
		}
		if !peers[i].Spec.Carries(addr.Is4()) {
			continue
		}
		if !slices.ContainsFunc(advs, func(a *v1alpha1.BerthBGPAdvertisement) bool {
			return len(a.Spec.Peers) == 0 || slices.Contains(a.Spec.Peers, s.Peer)
		}) {
			continue
		}
		if s.State == "Established" {
			r.Peers = append(r.Peers, s.Peer)
		} else {
			r.Down = append(r.Down, s.Peer+" ("+s.State+")")
		}
	}
	return r
}

// announces reports whether entries (addresses, ranges "first-last" and
// prefixes, as in BerthNodeStatus.status.bgp) hold addr.
func announces(entries []string, addr netip.Addr) bool {
	for _, e := range entries {
		if first, last, ok := strings.Cut(e, "-"); ok {
			f, err1 := netip.ParseAddr(first)
			l, err2 := netip.ParseAddr(last)
			if err1 == nil && err2 == nil && f.Compare(addr) <= 0 && addr.Compare(l) <= 0 {
				return true
			}
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			if p.Contains(addr) {
				return true
			}
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil && a == addr {
			return true
		}
	}
	return false
}

// verdict says whether r's address is reachable, and from where; if not,
// the first reason why.
func verdict(r Address, svc *corev1.Service, advertised bool) string {
	var peers, bgpNodes []string
	for _, b := range r.BGP {
		peers = append(peers, b.Peers...)
		if len(b.Peers) > 0 {
			bgpNodes = append(bgpNodes, b.Node)
		}
	}
	slices.Sort(peers)
	peers = slices.Compact(peers)
	var ways []string
	if len(peers) > 0 {
		ways = append(ways, fmt.Sprintf("reachable from peers %s (through %s)", strings.Join(peers, ", "), strings.Join(bgpNodes, ", ")))
	}
	if len(r.L2) > 0 {
		ways = append(ways, "reachable on layer 2 through "+strings.Join(r.L2, ", "))
	}
	var withheld []string
	for _, w := range r.Withheld {
		withheld = append(withheld, w.Node)
	}
	if len(ways) > 0 {
		if len(withheld) > 0 {
			ways = append(ways, "withdrawn by "+strings.Join(withheld, ", ")+" (forwarding failed)")
		}
		return strings.Join(ways, "; ")
	}
	switch {
	case r.Pool == "":
		return "not announced: no BerthIPPool holds " + r.Addr.String()
	case !advertised:
		return fmt.Sprintf("not announced: no BerthBGPAdvertisement or BerthL2Advertisement selects pool %s", r.Pool)
	case len(withheld) > 0:
		return "not announced: forwarding failed on " + strings.Join(withheld, ", ")
	case len(r.BGP) > 0:
		var nodes []string
		for _, b := range r.BGP {
			nodes = append(nodes, b.Node)
		}
		return fmt.Sprintf("not reachable: announced by %s, but no BGP session that carries it is Established", strings.Join(nodes, ", "))
	case svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal:
		return "not announced: no eligible node with a ready endpoint (externalTrafficPolicy: Local) announces it"
	}
	return "not announced: no eligible node announces it"
}
