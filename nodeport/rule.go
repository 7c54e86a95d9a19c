package nodeport

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
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

// protocolFromNFT is the inverse of nftName, for reading the table back.
func protocolFromNFT(s string) (Protocol, bool) {
	switch s {
	case "tcp", "6":
		return TCP, true
	case "udp", "17":
		return UDP, true
	case "sctp", "132":
		return SCTP, true
	}
	return "", false
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
	// NodeIP is the node's own address to DNAT to; it must be of the same
	// family as Address.
	NodeIP netip.Addr
	// NodePort is the Service port's NodePort.
	NodePort uint16
}

// String formats the rule as "address:port/PROTO->nodeIP:nodePort", the form
// used in errors and logs.
func (r Rule) String() string {
	return fmt.Sprintf("%s/%s->%s", netip.AddrPortFrom(r.Address, r.Port), r.Protocol,
		netip.AddrPortFrom(r.NodeIP, r.NodePort))
}

// InvalidRuleError reports a rule Sync refused. Sync writes nothing when any
// rule is invalid.
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

// key is what the nftables maps are keyed by.
type key struct {
	addr  netip.Addr
	proto Protocol
	port  uint16
}

// target is a map element's value.
type target struct {
	ip   netip.Addr
	port uint16
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
	}
	if _, ok := r.Protocol.nftName(); !ok {
		return fmt.Sprintf("unknown protocol %q (want TCP, UDP or SCTP)", string(r.Protocol))
	}
	return ""
}

// validate turns rules into a ruleSet, or returns every problem found,
// joined, each an *InvalidRuleError. Identical duplicates are merged; the
// same address, protocol and port with two different targets is an error.
func validate(rules []Rule) (ruleSet, error) {
	set := make(ruleSet, len(rules))
	first := make(map[key]Rule, len(rules))
	var errs []error
	for _, r := range rules {
		if reason := checkRule(r); reason != "" {
			errs = append(errs, &InvalidRuleError{Rule: r, Reason: reason})
			continue
		}
		k := key{addr: r.Address, proto: r.Protocol, port: r.Port}
		t := target{ip: r.NodeIP, port: r.NodePort}
		if old, ok := set[k]; ok {
			if old != t {
				errs = append(errs, &InvalidRuleError{Rule: r,
					Reason: fmt.Sprintf("conflicts with rule %s for the same address, protocol and port", first[k])})
			}
			continue
		}
		set[k] = t
		first[k] = r
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("validating rules: %w", errors.Join(errs...))
	}
	return set, nil
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

// mapFor returns the name of the map holding addresses of addr's family.
func mapFor(addr netip.Addr) string {
	if addr.Is4() {
		return map4
	}
	return map6
}

// elementKey and elementValue spell k and t as nft map element fields.
func elementKey(k key) []string {
	proto, _ := k.proto.nftName()
	return []string{k.addr.String(), proto, strconv.Itoa(int(k.port))}
}

func elementValue(t target) []string {
	return []string{t.ip.String(), strconv.Itoa(int(t.port))}
}

// parseElement is the inverse of elementKey and elementValue.
func parseElement(keyFields, valueFields []string) (key, target, error) {
	if len(keyFields) != 3 || len(valueFields) != 2 {
		return key{}, target{}, fmt.Errorf("unexpected element %v : %v", keyFields, valueFields)
	}
	addr, err1 := netip.ParseAddr(keyFields[0])
	proto, ok := protocolFromNFT(keyFields[1])
	port, err2 := strconv.ParseUint(keyFields[2], 10, 16)
	ip, err3 := netip.ParseAddr(valueFields[0])
	nodePort, err4 := strconv.ParseUint(valueFields[1], 10, 16)
	if !ok {
		err1 = errors.Join(err1, fmt.Errorf("unknown protocol %q", keyFields[1]))
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return key{}, target{}, fmt.Errorf("unexpected element %v : %v: %w", keyFields, valueFields, err)
	}
	return key{addr: addr, proto: proto, port: uint16(port)}, target{ip: ip, port: uint16(nodePort)}, nil
}
