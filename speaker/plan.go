package speaker

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/nodeport"
)

// ExcludeLabel keeps a node out of load-balancer traffic (see
// config.Excluded for how its value is read).
const ExcludeLabel = config.ExcludeLabel

// Snapshot is everything the plan depends on, read from listers.
type Snapshot struct {
	Node *corev1.Node
	// Nodes are all the cluster's Nodes, for layer-2 eligibility.
	Nodes    []*corev1.Node
	Services []*corev1.Service
	// Slices are the EndpointSlices of the Services, used for
	// externalTrafficPolicy: Local.
	Slices  []*discoveryv1.EndpointSlice
	Pools   []*v1alpha1.BerthIPPool
	Peers   []*v1alpha1.BerthBGPPeer
	BGPAdvs []*v1alpha1.BerthBGPAdvertisement
	L2Advs  []*v1alpha1.BerthL2Advertisement
	// L2 is the speakers' membership as this node sees it.
	L2 L2View
	// Passwords maps "secret/key" to the value, for the Secrets the peers
	// reference; a missing entry means the Secret or key does not exist.
	Passwords map[string]string
	// PasswordErrors maps "secret/key" to why a Secret could not be read
	// (the speaker's Role does not name it, say), for the peers' status.
	PasswordErrors map[string]string
	// RouterID, if valid, is the router ID the speaker was started with;
	// it wins over the node's (see identityOf).
	RouterID netip.Addr
	// Namespaces are the labels of the cluster's namespaces, for
	// advertisements' namespaceSelector; nil without a Namespace cache.
	Namespaces map[string]labels.Set
	// CannotForward holds, by node, the addresses that node published in
	// its BerthNodeStatus as withheld because its forwarding for them is
	// not in place; this node's own entry too, as published, so that every
	// speaker plans layer-2 ownership from the same input.
	CannotForward map[string]map[netip.Addr]bool
}

// Plan is what one node must do.
type Plan struct {
	// Eligible is false when the node must announce nothing; Why says why.
	Eligible bool
	Why      string
	// Peers are the BGP sessions this node opens.
	Peers []bgp.Peer
	// Routes maps a peer name to what the node announces to it.
	Routes map[string][]bgp.Advertisement
	// Forward are the forwarding rules for the addresses this node
	// announces, and for L2Retry.
	Forward []nodeport.Rule
	// Problems maps an object ("BerthBGPPeer/name", "BerthBGPAdvertisement/name",
	// "Service/ns/name") to what is wrong with it, for conditions and
	// Events. A problem never removes what is healthy.
	Problems map[string]string
	// L2 are the addresses announced on layer 2, with their eligible
	// nodes and owner, sorted by address.
	L2 []L2Address
	// L2Owned are the addresses this node answers ARP/NDP for: those it
	// owns, and none while its membership is not quorate.
	L2Owned []netip.Addr
	// L2Retry are the addresses this node is a layer-2 candidate for
	// but left out of, because it published that it cannot forward them:
	// it keeps forwarding them (Forward), so that it learns when its
	// forwarding is repaired and only then becomes a candidate again.
	L2Retry []netip.Addr
	// L2Quorate is the L2View's Quorate.
	L2Quorate bool
	// BrokenPeers are peers the plan could not configure (a missing
	// Secret, say); the speaker keeps their current session as it is.
	BrokenPeers []string
	// Members are the addresses of every Node (InternalIP and ExternalIP),
	// the only sources the forwarding table lets reach the layer-2
	// membership port.
	Members []netip.Addr
}

// Compute plans what the node in s must do.
func Compute(s Snapshot) *Plan {
	p := &Plan{Routes: map[string][]bgp.Advertisement{}, Problems: map[string]string{}}
	if s.Node == nil {
		p.Why = "the node object does not exist"
		return p
	}
	nodeLabels := labels.Set(s.Node.Labels)
	// Sessions stay up on an ineligible node: it withdraws its routes, so
	// that uncordoning announces again without waiting for a session.
	p.Peers = p.peers(s, nodeLabels)
	// Computed for an ineligible node too: the speaker tells a planned
	// move (this node left Eligible) from a membership change by it.
	p.L2, p.L2Owned, p.L2Retry = computeL2(s)
	p.L2Quorate = s.L2.Quorate
	p.Members = nodeAddrs(s.Nodes, s.Node)
	if ok, why := eligible(s.Node); !ok {
		p.Why = why
		p.Forward = p.forwarding(s, nil, true)
		return p
	}
	p.Eligible = true
	cfg := config.For(s.Pools)
	local := localEndpoints(s.Slices, s.Node.Name)
	poolLabels := map[string]labels.Set{}
	for _, pool := range s.Pools {
		poolLabels[pool.Name] = pool.Labels
	}

	advs := slices.Clone(s.BGPAdvs)
	slices.SortFunc(advs, func(a, b *v1alpha1.BerthBGPAdvertisement) int { return strings.Compare(a.Name, b.Name) })
	routes := map[string]map[netip.Prefix]*bgp.Advertisement{}
	announced := map[netip.Addr]bool{}
	for _, a := range slices.Concat(p.L2Owned, p.L2Retry) {
		announced[a] = true
	}
	for _, svc := range s.Services {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !local[config.Key(svc)] {
			continue
		}
		for _, addr := range config.CurrentAddresses(svc) {
			poolName, ok := cfg.PoolFor(addr)
			if !ok {
				continue // not ours to announce
			}
			for _, adv := range advs {
				if !advMatches(&adv.Spec.AdvertisementSelector, poolName, poolLabels[poolName], svc, s.Namespaces[svc.Namespace], nodeLabels) {
					continue
				}
				route, err := routeFor(adv, addr, cfg, poolName)
				if err != nil {
					p.Problems["BerthBGPAdvertisement/"+adv.Name] = err.Error()
					continue
				}
				for _, peer := range p.Peers {
					if len(adv.Spec.Peers) > 0 && !slices.Contains(adv.Spec.Peers, peer.Name) {
						continue
					}
					if ok, why := carries(peer, route.Prefix.Addr()); !ok {
						if why != "" {
							p.Problems["BerthBGPPeer/"+peer.Name] = why
						}
						continue
					}
					addRoute(routes, peer.Name, route)
					announced[addr] = true
				}
			}
		}
	}
	for peer, byPrefix := range routes {
		for _, r := range byPrefix {
			p.Routes[peer] = append(p.Routes[peer], *r)
		}
		slices.SortFunc(p.Routes[peer], func(a, b bgp.Advertisement) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	}
	p.Forward = p.forwarding(s, announced, true)
	return p
}

// carries reports whether the session with peer carries addr's family
// (without Families, the family of the peer's address only), and if it
// carries it but cannot announce it, why: a route of the other family than
// the session needs a next hop of its own family, which the node has not.
func carries(peer bgp.Peer, addr netip.Addr) (bool, string) {
	if !carriesFamily(peer, addr.Is4()) {
		return false, ""
	}
	nh := peer.NextHopIPv6
	if addr.Is4() {
		nh = peer.NextHopIPv4
	}
	if addr.Is4() != sessionIPv4(peer) && !nh.IsValid() {
		fam := map[bool]string{true: "IPv4", false: "IPv6"}[addr.Is4()]
		to := peer.Address.String()
		if peer.Interface != "" {
			to = "interface " + peer.Interface
		}
		return false, fmt.Sprintf("the node has no %s address to announce as next hop over the session to %s (set nextHop%s, or the node annotation bgp.berth.dev/next-hop-%s)",
			fam, to, fam, strings.ToLower(fam))
	}
	return true, ""
}

// eligible reports whether a node may announce at all: Ready, schedulable
// (a cordon moves traffic away before a drain evicts pods) and not excluded.
func eligible(n *corev1.Node) (bool, string) {
	if config.Excluded(n.Labels) {
		return false, "the node is labelled " + ExcludeLabel
	}
	if n.Spec.Unschedulable {
		return false, "the node is cordoned"
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, ""
			}
			return false, "the node is not Ready"
		}
	}
	return false, "the node has no Ready condition"
}

// localEndpoints returns the Services ("ns/name") with a ready endpoint on
// the node.
func localEndpoints(slices []*discoveryv1.EndpointSlice, node string) map[string]bool {
	out := map[string]bool{}
	for _, es := range slices {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		for _, ep := range es.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if ep.NodeName != nil && *ep.NodeName == node && ready {
				out[es.Namespace+"/"+svc] = true
			}
		}
	}
	return out
}

func advMatches(sel *v1alpha1.AdvertisementSelector, pool string, poolLabels labels.Set, svc *corev1.Service, nsLabels, nodeLabels labels.Set) bool {
	return config.AdvertisementAdmits(sel, pool, poolLabels, svc, nsLabels) && selects(sel.NodeSelector, nodeLabels)
}

// selects treats a nil selector as matching everything and an invalid one
// as matching nothing.
func selects(ls *metav1.LabelSelector, set labels.Set) bool {
	if ls == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	return err == nil && s.Matches(set)
}

// routeFor builds the route for addr under adv: a host route, or the
// aggregate the advertisement asks for, with its attributes.
func routeFor(adv *v1alpha1.BerthBGPAdvertisement, addr netip.Addr, cfg *config.Config, pool string) (*bgp.Advertisement, error) {
	bits := addr.BitLen()
	if l := adv.Spec.AggregationLength; l != nil && addr.Is4() {
		bits = int(*l)
	}
	if l := adv.Spec.AggregationLengthV6; l != nil && addr.Is6() {
		bits = int(*l)
	}
	if bits < 0 || bits > addr.BitLen() {
		// Admission refuses these; an object stored before that rule, or
		// written around it, must not become an invalid route.
		return nil, fmt.Errorf("aggregation length %d is outside 0-%d for %s", bits, addr.BitLen(), addr)
	}
	prefix := netip.PrefixFrom(addr, bits).Masked()
	if pp, _ := cfg.Pool(pool); bits < addr.BitLen() && !pp.Covers(prefix) {
		return nil, fmt.Errorf("aggregation to %s is larger than pool %q's addresses; use a longer aggregation length", prefix, pool)
	}
	r := &bgp.Advertisement{Prefix: prefix}
	for _, c := range adv.Spec.Communities {
		v, err := bgp.ParseCommunity(c)
		if err != nil {
			return nil, fmt.Errorf("community %q: %w", c, err)
		}
		r.Communities = append(r.Communities, v)
	}
	for _, c := range adv.Spec.LargeCommunities {
		v, err := bgp.ParseLargeCommunity(c)
		if err != nil {
			return nil, fmt.Errorf("large community %q: %w", c, err)
		}
		r.LargeCommunities = append(r.LargeCommunities, v)
	}
	if lp := adv.Spec.LocalPreference; lp != nil {
		v := uint32(*lp)
		r.LocalPref = &v
	}
	return r, nil
}

// addRoute merges route into the peer's routes: advertisements that reach
// the same prefix add up their communities; the first local preference (by
// advertisement name) wins.
func addRoute(routes map[string]map[netip.Prefix]*bgp.Advertisement, peer string, route *bgp.Advertisement) {
	if routes[peer] == nil {
		routes[peer] = map[netip.Prefix]*bgp.Advertisement{}
	}
	have, ok := routes[peer][route.Prefix]
	if !ok {
		c := *route
		c.Communities = slices.Clone(route.Communities)
		c.LargeCommunities = slices.Clone(route.LargeCommunities)
		routes[peer][route.Prefix] = &c
		return
	}
	for _, c := range route.Communities {
		if !slices.Contains(have.Communities, c) {
			have.Communities = append(have.Communities, c)
		}
	}
	for _, c := range route.LargeCommunities {
		if !slices.Contains(have.LargeCommunities, c) {
			have.LargeCommunities = append(have.LargeCommunities, c)
		}
	}
	if have.LocalPref == nil {
		have.LocalPref = route.LocalPref
	}
}

// peers converts the BerthBGPPeers that select this node, with the node's BGP
// identity (see identityOf).
func (p *Plan) peers(s Snapshot, nodeLabels labels.Set) []bgp.Peer {
	var out []bgp.Peer
	id, problem := identityOf(s.Node, s.RouterID)
	if problem != "" {
		p.Problems["Node/"+s.Node.Name] = problem
	}
	for _, bp := range s.Peers {
		if !selects(bp.Spec.NodeSelector, nodeLabels) {
			continue
		}
		peer, err := convertPeer(bp, s.Passwords, s.PasswordErrors)
		if err != nil {
			p.Problems["BerthBGPPeer/"+bp.Name] = err.Error()
			p.BrokenPeers = append(p.BrokenPeers, bp.Name)
			continue
		}
		id.apply(&peer)
		out = append(out, peer)
	}
	slices.SortFunc(out, func(a, b bgp.Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func convertPeer(bp *v1alpha1.BerthBGPPeer, passwords, passwordErrors map[string]string) (bgp.Peer, error) {
	spec := &bp.Spec
	var addr netip.Addr
	switch {
	case (spec.Address == "") == (spec.Interface == ""):
		// Admission refuses it; an object written around that rule must
		// not become a session to nowhere.
		return bgp.Peer{}, fmt.Errorf("exactly one of address (%q) and interface (%q) must be set", spec.Address, spec.Interface)
	case spec.Address != "":
		var err error
		if addr, err = netip.ParseAddr(spec.Address); err != nil {
			return bgp.Peer{}, fmt.Errorf("address %q: %w", spec.Address, err)
		}
	}
	// An interface peer's address is the link-local neighbor that the
	// speaker finds on the node's interface when it applies the plan
	// (resolveInterfaces).
	peer := bgp.Peer{
		Name:        bp.Name,
		Address:     addr,
		Interface:   spec.Interface,
		Port:        uint16(spec.Port),
		ASN:         uint32(spec.ASN),
		LocalASN:    uint32(spec.LocalASN),
		TTLSecurity: spec.TTLSecurity,
	}
	if spec.SourceAddress != "" {
		var err error
		if peer.SourceAddress, err = netip.ParseAddr(spec.SourceAddress); err != nil {
			return bgp.Peer{}, fmt.Errorf("sourceAddress %q: %w", spec.SourceAddress, err)
		}
	}
	if err := convertFamilies(spec, &peer); err != nil {
		return bgp.Peer{}, err
	}
	if v := spec.HoldTimeSeconds; v != nil {
		if *v < 3 {
			// Admission refuses it; an object stored before that rule
			// must not silently get the default of 90s instead.
			return bgp.Peer{}, fmt.Errorf("holdTimeSeconds %d: must be at least 3 (a session without keepalives is not supported)", *v)
		}
		peer.HoldTime = time.Duration(*v) * time.Second
	}
	if v := spec.KeepaliveTimeSeconds; v != nil {
		peer.KeepaliveTime = time.Duration(*v) * time.Second
	}
	if v := spec.EBGPMultiHop; v != nil {
		peer.EBGPMultihopTTL = uint8(*v)
	}
	if v := spec.MaxReceivedPrefixes; v != nil && *v > 0 {
		peer.MaxReceivedPrefixes = uint32(*v)
	}
	if gr := spec.GracefulRestart; gr != nil && gr.Enabled {
		peer.GracefulRestart = true
		peer.RestartTime = 120 * time.Second
		if gr.RestartTimeSeconds != nil {
			peer.RestartTime = time.Duration(*gr.RestartTimeSeconds) * time.Second
		}
	}
	if ref := spec.PasswordSecretRef; ref != nil {
		pw, ok := passwords[SecretKey(ref)]
		if why, bad := passwordErrors[SecretKey(ref)]; !ok && bad {
			return bgp.Peer{}, fmt.Errorf("password Secret %q: %s", ref.Name, why)
		}
		if !ok {
			return bgp.Peer{}, fmt.Errorf("password Secret %q has no key %q (or does not exist)", ref.Name, keyOf(ref))
		}
		peer.Password = pw
	}
	return peer, nil
}

// SecretKey is the key of a Secret reference in Snapshot.Passwords.
func SecretKey(ref *v1alpha1.SecretKeyRef) string { return ref.Name + "/" + keyOf(ref) }

func keyOf(ref *v1alpha1.SecretKeyRef) string {
	if ref.Key == "" {
		return "password"
	}
	return ref.Key
}

// forwarding lists the rules that deliver traffic for the announced
// addresses, and for the private addresses a cloud backend mapped to this
// node (Node annotations forward.berth.dev/<address>), to the Services'
// NodePorts on this node.
//
// Mapped addresses are forwarded even on a node that is not eligible: the
// cloud sends their traffic here until the CCM has moved the mapping.
func (p *Plan) forwarding(s Snapshot, announced map[netip.Addr]bool, mapped bool) []nodeport.Rule {
	f := ruleSet{plan: p, node: s.Node, nodeIP: internalIPs(s.Node), seen: map[fwdKey]bool{}}
	byKey := make(map[string]*corev1.Service, len(s.Services))
	for _, svc := range s.Services {
		byKey[config.Key(svc)] = svc
		for _, addr := range config.CurrentAddresses(svc) {
			if announced[addr] {
				f.add(svc, addr)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Node.Annotations)) {
		if !mapped {
			break
		}
		addr, ok := strings.CutPrefix(k, v1alpha1.NodeAnnotationForwardPrefix)
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(addr)
		svc := byKey[s.Node.Annotations[k]]
		switch {
		case err != nil:
			p.Problems["Node/"+s.Node.Name] = fmt.Sprintf("annotation %s: %q is not an IP address", k, addr)
		case svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer:
			// The Service is gone or changed type; the CCM removes the
			// annotation when it notices.
		default:
			f.add(svc, ip)
		}
	}
	return f.out
}

// nodeAddrs returns the InternalIP and ExternalIP addresses of nodes and
// self, sorted, without duplicates.
func nodeAddrs(nodes []*corev1.Node, self *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, n := range append(slices.Clone(nodes), self) {
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err == nil && (a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP) {
				out = append(out, ip.Unmap())
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// sourceRanges returns whether svc restricts its clients, and to which
// ranges (config.SourceRanges). Ranges that do not parse restrict the
// Service to no client at all, never to every client, and are reported as
// a problem.
func (p *Plan) sourceRanges(svc *corev1.Service) (bool, []netip.Prefix) {
	restricted, ranges, err := config.SourceRanges(svc)
	if err != nil {
		p.Problems["Service/"+config.Key(svc)] = fmt.Sprintf("loadBalancerSourceRanges: %v; Berth refuses every client until they are fixed", err)
	}
	return restricted, ranges
}

type fwdKey struct {
	addr  netip.Addr
	proto nodeport.Protocol
	port  uint16
}

// ruleSet collects forwarding rules without duplicates.
type ruleSet struct {
	plan   *Plan
	node   *corev1.Node
	nodeIP map[bool]netip.Addr
	seen   map[fwdKey]bool
	out    []nodeport.Rule
}

// add forwards addr on each of the Service's ports to its NodePort.
func (f *ruleSet) add(svc *corev1.Service, addr netip.Addr) {
	target, ok := f.nodeIP[addr.Is4()]
	if !ok {
		f.plan.Problems["Service/"+config.Key(svc)] = fmt.Sprintf("node %s has no InternalIP of %s's family to forward to", f.node.Name, addr)
		return
	}
	restricted, ranges := f.plan.sourceRanges(svc)
	for _, port := range svc.Spec.Ports {
		if port.NodePort == 0 {
			f.plan.Problems["Service/"+config.Key(svc)] = "the Service has no NodePorts (allocateLoadBalancerNodePorts: false); Berth does not forward it and relies on the cluster's proxy"
			continue
		}
		proto := nodeport.Protocol(port.Protocol)
		if proto == "" {
			proto = nodeport.TCP
		}
		k := fwdKey{addr, proto, uint16(port.Port)}
		if f.seen[k] {
			continue
		}
		f.seen[k] = true
		f.out = append(f.out, nodeport.Rule{Address: addr, Protocol: proto, Port: uint16(port.Port), NodeIP: target,
			NodePort: uint16(port.NodePort), Restricted: restricted, SourceRanges: ranges})
	}
}
