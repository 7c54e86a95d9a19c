package nodeport

import (
	"net/netip"
	"slices"

	"sigs.k8s.io/knftables"
)

// Names of the objects in the table. See doc.go for what each one does.
const (
	portMap4  = "port4"
	portMap6  = "port6"
	nodeMap4  = "node4"
	nodeMap6  = "node6"
	drainSet4 = "drain4"
	drainSet6 = "drain6"

	rewritePrerouting = "rewrite-prerouting"
	rewriteOutput     = "rewrite-output"
	natPrerouting     = "nat-prerouting"
	natOutput         = "nat-output"

	tableComment = "berth: LoadBalancer address to NodePort; managed by berth-speaker, do not edit"
)

// rewritePriority runs the rewrite after conntrack (-200) has recorded the
// load-balancer address as the connection's original destination, after
// the filter chains kube-proxy's nftables mode hooks at dstnat-10 (so its
// loadBalancerSourceRanges check still sees the load-balancer address), and
// before any NAT chain at dstnat (-100), which must see the NodePort.
const rewritePriority = knftables.DNATPriority + "-5"

// natPriority puts the fallback DNAT after the proxies' own DNAT at dstnat:
// netfilter consults a later NAT chain only if no earlier one bound the
// connection, so this chain acts only when nobody else translated it.
const natPriority = knftables.DNATPriority + "+10"

// family holds the nft spelling of one address family.
type family struct {
	ip       string // "ip" or "ip6", the network header and the nat family
	portMap  string
	nodeMap  string
	addrType string
	suffix   string // "4" or "6", in rule comments
	drainSet string
	nfproto  string // "ipv4" or "ipv6"
	// daddr and redirectDst spell the packet's destination address and,
	// in an ICMP redirect, the destination the redirect is about, as raw
	// payload: nft has no name for the latter, and a set can only be
	// matched by expressions of its own type, so the drain sets are typed
	// by raw payload too (see drainRules).
	daddr, redirectDst string
	redirect           string // the ICMP type match of a redirect
}

var families = []family{
	{ip: "ip", portMap: portMap4, nodeMap: nodeMap4, addrType: "ipv4_addr", suffix: "4", drainSet: drainSet4,
		nfproto: "ipv4", daddr: "@nh,128,32", redirect: "icmp type redirect", redirectDst: "@th,192,32"},
	{ip: "ip6", portMap: portMap6, nodeMap: nodeMap6, addrType: "ipv6_addr", suffix: "6", drainSet: drainSet6,
		nfproto: "ipv6", daddr: "@nh,192,128", redirect: "icmpv6 type nd-redirect", redirectDst: "@th,192,128"},
}

func familyOf(addr netip.Addr) family {
	if addr.Is4() {
		return families[0]
	}
	return families[1]
}

// maps returns the four maps, empty.
func maps() []*knftables.Map {
	var out []*knftables.Map
	for _, f := range families {
		out = append(out,
			&knftables.Map{Name: f.portMap, Type: f.addrType + " . inet_proto . inet_service : inet_service"},
			&knftables.Map{Name: f.nodeMap, Type: f.addrType + " : " + f.addrType})
	}
	return out
}

// sets returns the two drain sets, empty. Their elements are addresses
// spelled as integers (see drainElement).
func sets() []*knftables.Set {
	var out []*knftables.Set
	for _, f := range families {
		out = append(out, &knftables.Set{Name: f.drainSet, TypeOf: f.daddr})
	}
	return out
}

// drainRules return the rules that exempt the mid-stream packets of
// connections this node does not know, to a draining address, from the
// rewrite and the fallback DNAT: conntrack picks such a packet up as ct
// state new, and delivering it to the local NodePort would reset the
// connection; left alone it is routed, by the speaker's host route, to the
// old owner, which knows the connection. SYNs, and this node's own
// connections (not ct state new), are not affected. Only TCP: nothing
// tells a UDP flow's first packet from a later one.
func drainRules() []*knftables.Rule {
	var out []*knftables.Rule
	for _, f := range families {
		out = append(out, &knftables.Rule{
			Comment: knftables.PtrTo("drain" + f.suffix),
			Rule:    knftables.Concat("ct state new meta nfproto", f.nfproto, f.daddr, "@"+f.drainSet, "tcp flags & (syn | ack) != syn accept"),
		})
	}
	return out
}

// redirectRules drop the ICMP redirects the node would send a client
// whose packets for a draining address it forwards to the old owner out of
// the interface they came in on: a client that obeyed would send its new
// connections to the old owner too.
func redirectRules() []*knftables.Rule {
	var out []*knftables.Rule
	for _, f := range families {
		out = append(out, &knftables.Rule{
			Comment: knftables.PtrTo("redirect" + f.suffix),
			Rule:    knftables.Concat(f.redirect, f.redirectDst, "@"+f.drainSet, "drop"),
		})
	}
	return out
}

// chainSpec is one base chain and its fixed rules.
type chainSpec struct {
	name     string
	typ      knftables.BaseChainType
	hook     knftables.BaseChainHook
	priority knftables.BaseChainPriority
	rules    []*knftables.Rule
}

// chains returns the four base chains. Their rules never change; Services
// only add map elements, so the cost per packet does not grow with them.
//
// The rewrite chains set the destination port first, from the port map
// keyed by the untouched destination, and then the address, from the node
// map keyed by the (still untouched) destination address; nft cannot write
// two fields from one lookup. The payload statements update the IP, TCP and
// UDP checksums, and nft 1.0.6 asks the kernel to recompute SCTP's CRC32c
// (csum_type sctp). A packet without a matching element fails the first
// lookup and passes untouched. The output chain is of type route so that
// the kernel routes the node's own packet again after its destination
// changed.
func chains() []chainSpec {
	var rewrite, nat []*knftables.Rule
	for _, f := range families {
		for _, proto := range []string{"tcp", "udp", "sctp"} {
			rewrite = append(rewrite, &knftables.Rule{
				Comment: knftables.PtrTo(proto + f.suffix),
				Rule: knftables.Concat("ct state new",
					proto, "dport set", f.ip, "daddr . meta l4proto .", proto, "dport map", "@"+f.portMap,
					f.ip, "daddr set", f.ip, "daddr map", "@"+f.nodeMap),
			})
		}
		nat = append(nat, &knftables.Rule{
			Comment: knftables.PtrTo("nat" + f.suffix),
			Rule: knftables.Concat("meta l4proto { tcp, udp, sctp } dnat", f.ip, "to",
				"ct original", f.ip, "daddr map", "@"+f.nodeMap, ":",
				"ct original", f.ip, "daddr . meta l4proto . ct original proto-dst map", "@"+f.portMap),
		})
	}
	drain := drainRules()
	return []chainSpec{
		{rewritePrerouting, knftables.FilterType, knftables.PreroutingHook, rewritePriority, slices.Concat(drain, rewrite)},
		{rewriteOutput, knftables.RouteType, knftables.OutputHook, rewritePriority, slices.Concat(redirectRules(), rewrite)},
		{natPrerouting, knftables.NATType, knftables.PreroutingHook, natPriority, slices.Concat(drain, nat)},
		{natOutput, knftables.NATType, knftables.OutputHook, natPriority, nat},
	}
}

// comments returns the comments of a chain's rules, in order; Check
// compares them to tell whether the chain was changed.
func (c chainSpec) comments() []string {
	out := make([]string, len(c.rules))
	for i, r := range c.rules {
		out[i] = *r.Comment
	}
	return out
}
