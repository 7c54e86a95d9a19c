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

// target is where a rule sends its traffic.
type target struct {
	ip   netip.Addr
	port uint16
}

// ruleSet is a validated set of rules: their targets, and the source
// ranges of the restricted ones, kept apart so that unrestricted rules,
// most of them, cost no more to diff than before source ranges existed.
type ruleSet struct {
	targets map[key]target
	// ranges holds the restricted keys, each with encodeRanges of its
	// merged ranges of the key's family ("" refuses every client).
	ranges map[key]string
}

func newRuleSet(n int) ruleSet {
	return ruleSet{targets: make(map[key]target, n), ranges: map[key]string{}}
}

// elements returns the elements of rule k: its port map element first,
// then those of the source range sets (not its node map element).
func (s ruleSet) elements(k key) []element {
	out := []element{portElement(k, s.targets[k].port)}
	if rs, ok := s.ranges[k]; ok {
		out = append(out, restrictElement(k))
		for _, r := range decodeRanges(rs, k.addr.BitLen()/8) {
			out = append(out, allowElement(k, r))
		}
	}
	return out
}

// rule returns rule k (its source ranges left out), for reports.
func (s ruleSet) rule(k key) Rule {
	t := s.targets[k]
	_, restricted := s.ranges[k]
	return Rule{Address: k.addr, Protocol: k.proto, Port: k.port, NodeIP: t.ip, NodePort: t.port, Restricted: restricted}
}

// changedKeys returns the keys of old that are missing from new or differ
// there (target or source ranges), and the keys of new that are missing
// from old or differ there.
func changedKeys(old, new ruleSet) (del, add []key) {
	del, add = diff(old.targets, new.targets)
	rdel, radd := diff(old.ranges, new.ranges)
	if len(rdel)+len(radd) == 0 {
		return del, add
	}
	seen := map[key]bool{}
	for _, k := range slices.Concat(del, add) {
		seen[k] = true
	}
	for _, k := range slices.Concat(rdel, radd) {
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := old.targets[k]; ok {
			del = append(del, k)
		}
		if _, ok := new.targets[k]; ok {
			add = append(add, k)
		}
	}
	return del, add
}

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
	set := newRuleSet(len(rules))
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
		t := target{ip: r.NodeIP, port: r.NodePort}
		var rs string
		if r.Restricted {
			rs = encodeRanges(ranges(r.Address, r.SourceRanges))
		}
		if old, ok := set.targets[k]; ok {
			if ors, restricted := set.ranges[k]; old != t || restricted != r.Restricted || ors != rs {
				errs = append(errs, &InvalidRuleError{Rule: r,
					Reason: fmt.Sprintf("conflicts with rule %s for the same address, protocol and port (target or source ranges)", set.rule(k))})
			}
			continue
		}
		if _, ok := byAddr[r.Address]; !ok {
			byAddr[r.Address] = r
		}
		set.targets[k] = t
		if r.Restricted {
			set.ranges[k] = rs
		}
	}
	nodes := make(map[netip.Addr]netip.Addr, len(byAddr))
	for a, r := range byAddr {
		nodes[a] = r.NodeIP
	}
	return set, nodes, errs
}

// sortedKeys returns the keys of s in a stable order (family, address,
// protocol, port), so that transactions, and golden files, are reproducible.
func sortedKeys(s ruleSet) []key {
	keys := make([]key, 0, len(s.targets))
	for k := range s.targets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

func compareKeys(a, b key) int {
	return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
}
