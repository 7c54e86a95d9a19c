package nodeport

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// Protocol is a transport protocol, spelled as in a Service's ports
// (corev1.Protocol), so the speaker can convert with Protocol(port.Protocol).
type Protocol string

// The protocols a Rule can forward.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// nftName returns the protocol's name in nft's inet_proto type.
func (p Protocol) nftName() (string, bool) {
	switch p {
	case TCP:
		return "tcp", true
	case UDP:
		return "udp", true
	case SCTP:
		return "sctp", true
	}
	return "", false
}

// number returns the protocol's IP protocol number, as nft's inet_proto
// stores it.
func (p Protocol) number() (byte, bool) {
	switch p {
	case TCP:
		return unix.IPPROTO_TCP, true
	case UDP:
		return unix.IPPROTO_UDP, true
	case SCTP:
		return unix.IPPROTO_SCTP, true
	}
	return 0, false
}

// Rule asks a node to forward one load-balancer address, port and protocol
// to the Service's NodePort on one of the node's own addresses.
type Rule struct {
	// Address is the load-balancer address traffic arrives for.
	Address netip.Addr
	// Protocol is the transport protocol of the Service port.
	Protocol Protocol
	// Port is the Service port (the destination port clients use).
	Port uint16
	// NodeIP is the node's own address to send the traffic to; it must be
	// of the same family as Address, and all rules for one Address must
	// have the same NodeIP.
	NodeIP netip.Addr
	// NodePort is the Service port's NodePort.
	NodePort uint16
	// Restricted, if set, refuses new connections to Address, Protocol
	// and Port from any client outside SourceRanges (the Service's
	// loadBalancerSourceRanges): they are dropped before the rewrite to
	// the NodePort. Ranges of the other family than Address do not
	// apply; a restricted rule without ranges of its family refuses
	// every client. All rules of one address, protocol and port must
	// agree.
	Restricted bool
	// SourceRanges are the clients allowed when Restricted is set.
	SourceRanges []netip.Prefix
}

// String formats the rule as "address:port/PROTO->nodeIP:nodePort", the form
// used in errors and logs.
func (r Rule) String() string {
	return fmt.Sprintf("%s/%s->%s", netip.AddrPortFrom(r.Address, r.Port), r.Protocol,
		netip.AddrPortFrom(r.NodeIP, r.NodePort))
}

// InvalidRuleError reports a rule Sync refused. Sync still programs every
// valid rule: one bad rule never holds up the others.
type InvalidRuleError struct {
	// Rule is the offending rule.
	Rule Rule
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *InvalidRuleError) Error() string {
	return fmt.Sprintf("invalid rule %s: %s", e.Rule, e.Reason)
}

// IsInvalidRule reports whether err (or an error it wraps or joins) is an
// *InvalidRuleError.
func IsInvalidRule(err error) bool {
	var e *InvalidRuleError
	return errors.As(err, &e)
}

// key identifies a rule: what the port maps are keyed by.
type key struct {
	addr  netip.Addr
	proto Protocol
	port  uint16
}

// target is where a rule sends its traffic, and who may send it.
type target struct {
	ip   netip.Addr
	port uint16
	// restricted and ranges (encodeRanges of the merged ranges of the
	// address's family) are the rule's source ranges.
	restricted bool
	ranges     string
}

// elements returns the elements of the port map and source range sets
// for rule k -> t (not its node map element).
func (t target) elements(k key) []element {
	out := []element{portElement(k, t.port)}
	if t.restricted {
		out = append(out, restrictElement(k))
		for _, r := range decodeRanges(t.ranges, k.addr.BitLen()/8) {
			out = append(out, allowElement(k, r))
		}
	}
	return out
}

// ruleSet is a validated set of rules.
type ruleSet map[key]target

// checkRule returns why r cannot be programmed, or "" if it can.
func checkRule(r Rule) string {
	switch {
	case !r.Address.IsValid():
		return "address is not set"
	case !r.NodeIP.IsValid():
		return "node IP is not set"
	case r.Address.Zone() != "" || r.NodeIP.Zone() != "":
		return "addresses must not have an IPv6 zone"
	case r.Address.IsUnspecified() || r.NodeIP.IsUnspecified():
		return "addresses must not be unspecified (0.0.0.0 or ::)"
	case r.Address.Is4() != r.NodeIP.Is4():
		return "address and node IP are of different families"
	case r.Port == 0:
		return "port is 0"
	case r.NodePort == 0:
		return "node port is 0"
	case !r.Restricted && len(r.SourceRanges) > 0:
		return "source ranges without Restricted"
	}
	for _, p := range r.SourceRanges {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return fmt.Sprintf("invalid source range %q", p)
		}
	}
	if _, ok := r.Protocol.nftName(); !ok {
		return fmt.Sprintf("unknown protocol %q (want TCP, UDP or SCTP)", string(r.Protocol))
	}
	return ""
}

// validate turns rules into a ruleSet and the node IP of each of its
// addresses, leaving out the invalid ones, and returns every problem
// found, one *InvalidRuleError per rule left out. Identical duplicates are
// merged. Of two rules for the same address, protocol and port with
// different targets or source ranges, and of two rules forwarding one
// address to different node IPs (the table looks the node IP up by address
// alone, see chains), the first is kept and the other refused.
func validate(rules []Rule) (ruleSet, map[netip.Addr]netip.Addr, []error) {
	set := make(ruleSet, len(rules))
	nodes := make(map[netip.Addr]netip.Addr)
	byAddr := make(map[netip.Addr]Rule)
	var errs []error
	for _, r := range rules {
		if reason := checkRule(r); reason != "" {
			errs = append(errs, &InvalidRuleError{Rule: r, Reason: reason})
			continue
		}
		if other, ok := byAddr[r.Address]; ok && other.NodeIP != r.NodeIP {
			errs = append(errs, &InvalidRuleError{Rule: r,
				Reason: fmt.Sprintf("conflicts with rule %s: one address is forwarded to one node IP", other)})
			continue
		}
		k := key{addr: r.Address, proto: r.Protocol, port: r.Port}
		t := target{ip: r.NodeIP, port: r.NodePort, restricted: r.Restricted}
		if r.Restricted {
			t.ranges = encodeRanges(ranges(r.Address, r.SourceRanges))
		}
		if old, ok := set[k]; ok {
			if old != t {
				first := Rule{Address: k.addr, Protocol: k.proto, Port: k.port, NodeIP: old.ip, NodePort: old.port}
				errs = append(errs, &InvalidRuleError{Rule: r,
					Reason: fmt.Sprintf("conflicts with rule %s for the same address, protocol and port (target or source ranges)", first)})
			}
			continue
		}
		if _, ok := byAddr[r.Address]; !ok {
			byAddr[r.Address], nodes[r.Address] = r, r.NodeIP
		}
		set[k] = t
	}
	return set, nodes, errs
}

// sortedKeys returns the keys of s in a stable order (family, address,
// protocol, port), so that transactions, and golden files, are reproducible.
func sortedKeys(s ruleSet) []key {
	keys := make([]key, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

func compareKeys(a, b key) int {
	return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
}
