package speaker

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
)

// nodeIdentity is what a node says about its own BGP sessions: its router
// ID, AS number, source addresses and next hops (see the Node labels and
// annotations in package v1alpha1). The zero value of a field means the
// node does not say.
type nodeIdentity struct {
	routerID netip.Addr
	localASN uint32
	// source and nextHop are by family ("is IPv4").
	source, nextHop map[bool]netip.Addr
	// addrs are the node's first InternalIP (else ExternalIP) of each
	// family, the next hops of routes over a session of the other family.
	addrs map[bool]netip.Addr
}

// identityOf reads n's BGP identity. override, if valid, is the router ID
// the speaker was started with (--router-id), which wins over everything.
// What does not parse is reported in problem, and left out.
func identityOf(n *corev1.Node, override netip.Addr) (id nodeIdentity, problem string) {
	id = nodeIdentity{source: map[bool]netip.Addr{}, nextHop: map[bool]netip.Addr{}, addrs: nodeFamilyAddrs(n)}
	var problems []string
	addr := func(key string, v4 bool) netip.Addr {
		v, ok := n.Annotations[key]
		if !ok {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Is4() != v4 || a.Zone() != "" || a.IsUnspecified() {
			problems = append(problems, fmt.Sprintf("annotation %s: %q is not an IPv%s address", key, v, map[bool]string{true: "4", false: "6"}[v4]))
			return netip.Addr{}
		}
		return a
	}
	id.routerID = override
	if !id.routerID.IsValid() {
		id.routerID = addr(v1alpha1.NodeAnnotationRouterID, true)
	}
	if !id.routerID.IsValid() {
		id.routerID = routerIDFor(n.Name, id.addrs)
	}
	id.source[true] = addr(v1alpha1.NodeAnnotationSourceIPv4, true)
	id.source[false] = addr(v1alpha1.NodeAnnotationSourceIPv6, false)
	id.nextHop[true] = addr(v1alpha1.NodeAnnotationNextHopIPv4, true)
	id.nextHop[false] = addr(v1alpha1.NodeAnnotationNextHopIPv6, false)
	asn, from := n.Labels[v1alpha1.NodeLabelLocalASN], "label"
	if asn == "" {
		asn, from = n.Annotations[v1alpha1.NodeLabelLocalASN], "annotation"
	}
	if asn != "" {
		v, err := strconv.ParseUint(asn, 10, 32)
		if err != nil || v == 0 {
			problems = append(problems, fmt.Sprintf("%s %s: %q is not an AS number (1-4294967295)", from, v1alpha1.NodeLabelLocalASN, asn))
		} else {
			id.localASN = uint32(v)
		}
	}
	for i, p := range problems {
		if i > 0 {
			problem += "; "
		}
		problem += p
	}
	return id, problem
}

// routerIDFor is the router ID of a node without one of its own: its first
// IPv4 InternalIP (else ExternalIP), unique in the cluster; else, on an
// IPv6-only node, a hash of its name, which is stable across restarts and
// re-creations of the Node. Two IPv6-only nodes collide with a chance of
// one in about 4 billion per pair; the router ID annotation fixes one.
func routerIDFor(name string, addrs map[bool]netip.Addr) netip.Addr {
	if a, ok := addrs[true]; ok {
		return a
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	v := h.Sum32()
	if v == 0 {
		v = 1 // 0.0.0.0 is not a router ID
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// nodeFamilyAddrs returns n's first InternalIP of each family, else its
// first ExternalIP, keyed by "is IPv4".
func nodeFamilyAddrs(n *corev1.Node) map[bool]netip.Addr {
	out := map[bool]netip.Addr{}
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || a.Type != typ || ip.IsUnspecified() {
				continue
			}
			ip = ip.Unmap()
			if _, seen := out[ip.Is4()]; !seen {
				out[ip.Is4()] = ip
			}
		}
	}
	return out
}

// apply gives peer the node's identity where the BerthBGPPeer leaves it open:
// the router ID always, the local AS number (the node's wins: an AS per
// rack is a property of the node), the source address of the session's
// family, and the next hop of each family the session carries. A family
// of the other kind than the session needs a next hop; without one the
// route cannot be announced, which Compute reports.
func (id nodeIdentity) apply(peer *bgp.Peer) {
	peer.RouterID = id.routerID
	if id.localASN != 0 {
		peer.LocalASN = id.localASN
	}
	sessionV4 := sessionIPv4(*peer)
	if !peer.SourceAddress.IsValid() && peer.Interface == "" {
		peer.SourceAddress = id.source[sessionV4]
	}
	for _, v4 := range []bool{true, false} {
		if !carriesFamily(*peer, v4) {
			continue
		}
		nh := &peer.NextHopIPv6
		if v4 {
			nh = &peer.NextHopIPv4
		}
		if nh.IsValid() {
			continue // the BerthBGPPeer's own
		}
		*nh = id.nextHop[v4]
		if !nh.IsValid() && v4 != sessionV4 {
			*nh = id.addrs[v4]
		}
	}
}

// sessionIPv4 reports whether peer's session is over IPv4: an interface
// peer's is over IPv6 link-local addresses, found only when the plan is
// applied.
func sessionIPv4(peer bgp.Peer) bool { return peer.Interface == "" && peer.Address.Is4() }

// carriesFamily reports whether peer's session carries IPv4 (v4) or IPv6
// routes: Families, else the family of its session.
func carriesFamily(peer bgp.Peer, v4 bool) bool {
	if len(peer.Families) == 0 {
		return sessionIPv4(peer) == v4
	}
	f := bgp.IPv6Unicast
	if v4 {
		f = bgp.IPv4Unicast
	}
	return slices.Contains(peer.Families, f)
}

// convertFamilies sets the families and next hops of spec on peer.
func convertFamilies(spec *v1alpha1.BerthBGPPeerSpec, peer *bgp.Peer) error {
	for _, f := range spec.Families {
		switch f {
		case v1alpha1.BGPFamilyIPv4:
			peer.Families = append(peer.Families, bgp.IPv4Unicast)
		case v1alpha1.BGPFamilyIPv6:
			peer.Families = append(peer.Families, bgp.IPv6Unicast)
		default:
			return fmt.Errorf("families: unknown family %q", f)
		}
	}
	for _, nh := range []struct {
		field, v string
		v4       bool
		to       *netip.Addr
	}{{"nextHopIPv4", spec.NextHopIPv4, true, &peer.NextHopIPv4}, {"nextHopIPv6", spec.NextHopIPv6, false, &peer.NextHopIPv6}} {
		if nh.v == "" {
			continue
		}
		a, err := netip.ParseAddr(nh.v)
		if err != nil || a.Is4() != nh.v4 {
			return fmt.Errorf("%s %q: not an address of that family", nh.field, nh.v)
		}
		*nh.to = a
	}
	return nil
}
