package nodeport

import (
	"net/netip"

	"sigs.k8s.io/knftables"
)

// Names of the objects in the table. See doc.go for what each one does.
const (
	portMap4 = "port4"
	portMap6 = "port6"
	nodeMap4 = "node4"
	nodeMap6 = "node6"

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
}

var families = []family{
	{ip: "ip", portMap: portMap4, nodeMap: nodeMap4, addrType: "ipv4_addr", suffix: "4"},
	{ip: "ip6", portMap: portMap6, nodeMap: nodeMap6, addrType: "ipv6_addr", suffix: "6"},
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
	return []chainSpec{
		{rewritePrerouting, knftables.FilterType, knftables.PreroutingHook, rewritePriority, rewrite},
		{rewriteOutput, knftables.RouteType, knftables.OutputHook, rewritePriority, rewrite},
		{natPrerouting, knftables.NATType, knftables.PreroutingHook, natPriority, nat},
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
