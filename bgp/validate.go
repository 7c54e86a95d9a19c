package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Defaults applied by withDefaults.
const (
	defaultPort          = 179
	defaultHoldTime      = 90 * time.Second
	defaultKeepaliveTime = 30 * time.Second
	defaultRestartTime   = 120 * time.Second
	maxRestartTime       = 4095 * time.Second // 12 bits in the capability
	maxHoldTime          = 65535 * time.Second
	// maxMaxReceivedPrefixes bounds a peer's prefix limit (about 400 MiB
	// of received routes), as the BerthBGPPeer schema does.
	maxMaxReceivedPrefixes = 1000000
)

// ErrInvalid is wrapped by every validation error; test with errors.Is.
var ErrInvalid = errors.New("invalid")

// IsInvalid reports whether err is a validation error.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalid) }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// validateConfig checks cfg.
func validateConfig(cfg Config) error {
	if cfg.RouterID.IsValid() && !validRouterID(cfg.RouterID) {
		return invalidf("router ID %v: must be a non-zero IPv4 address", cfg.RouterID)
	}
	return nil
}

// validRouterID reports whether id can be a BGP identifier (RFC 6286: any
// non-zero 32-bit value, written as an IPv4 address).
func validRouterID(id netip.Addr) bool { return id.Is4() && !id.IsUnspecified() }

// withDefaults returns p with its zero fields set to their defaults, its
// router ID defaulting to routerID.
func withDefaults(p Peer, routerID netip.Addr) Peer {
	if !p.RouterID.IsValid() {
		p.RouterID = routerID
	}
	if p.Port == 0 {
		p.Port = defaultPort
	}
	if p.HoldTime == 0 {
		p.HoldTime = defaultHoldTime
	}
	if p.KeepaliveTime == 0 {
		p.KeepaliveTime = min(defaultKeepaliveTime, p.HoldTime/3)
	}
	if p.GracefulRestart && p.RestartTime == 0 {
		p.RestartTime = defaultRestartTime
	}
	if len(p.Families) == 0 {
		p.Families = []Family{familyOf(p.Address)}
	} else {
		p.Families = slices.Clone(p.Families)
		slices.Sort(p.Families)
		p.Families = slices.Compact(p.Families)
	}
	return p
}

// familyOf is the unicast family of a.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4Unicast
	}
	return IPv6Unicast
}

// validatePeer checks a peer that withDefaults has been applied to.
func validatePeer(p Peer) error {
	switch {
	case p.Name == "":
		return invalidf("peer %v: empty name", p.Address)
	case !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.Is4In6():
		return invalidf("peer %q: address %v: must be a plain IPv4 or IPv6 address", p.Name, p.Address)
	case p.Interface == "" && p.Address.Zone() != "":
		return invalidf("peer %q: address %v: zoned addresses are only for interface peers", p.Name, p.Address)
	case p.Interface != "" && (!p.Address.Is6() || !p.Address.IsLinkLocalUnicast() || p.Address.Zone() != p.Interface):
		return invalidf("peer %q: address %v: an interface peer's address must be an IPv6 link-local address zoned with %q", p.Name, p.Address, p.Interface)
	case p.Interface != "" && (p.SourceAddress.IsValid() || p.EBGPMultihopTTL != 0):
		return invalidf("peer %q: interface %s: a source address and eBGP multihop do not apply to an interface peer", p.Name, p.Interface)
	case !validRouterID(p.RouterID):
		return invalidf("peer %q: router ID %v: must be a non-zero IPv4 address", p.Name, p.RouterID)
	case p.ASN == 0 || p.LocalASN == 0:
		return invalidf("peer %q: ASN %d, local ASN %d: must not be 0", p.Name, p.ASN, p.LocalASN)
	case p.SourceAddress.IsValid() && p.SourceAddress.Is4() != p.Address.Is4():
		return invalidf("peer %q: source address %v is not of the family of %v", p.Name, p.SourceAddress, p.Address)
	case p.HoldTime < 3*time.Second || p.HoldTime > maxHoldTime:
		return invalidf("peer %q: hold time %v: must be between 3s and %v", p.Name, p.HoldTime, maxHoldTime)
	case p.KeepaliveTime < time.Second || p.KeepaliveTime > p.HoldTime:
		return invalidf("peer %q: keepalive time %v: must be between 1s and the hold time %v", p.Name, p.KeepaliveTime, p.HoldTime)
	case p.TTLSecurity && p.EBGPMultihopTTL != 0:
		return invalidf("peer %q: TTL security and eBGP multihop exclude each other", p.Name)
	case p.EBGPMultihopTTL != 0 && p.ASN == p.LocalASN:
		return invalidf("peer %q: eBGP multihop on an iBGP session", p.Name)
	case p.RestartTime < 0 || p.RestartTime > maxRestartTime:
		return invalidf("peer %q: restart time %v: must be at most %v", p.Name, p.RestartTime, maxRestartTime)
	case p.MaxReceivedPrefixes > maxMaxReceivedPrefixes:
		return invalidf("peer %q: prefix limit %d: must be at most %d", p.Name, p.MaxReceivedPrefixes, maxMaxReceivedPrefixes)
	case len(p.Password) > 80:
		return invalidf("peer %q: TCP MD5 password longer than 80 bytes", p.Name)
	}
	for _, f := range p.Families {
		if f != IPv4Unicast && f != IPv6Unicast {
			return invalidf("peer %q: unknown family %q", p.Name, f)
		}
	}
	for f, nh := range map[Family]netip.Addr{IPv4Unicast: p.NextHopIPv4, IPv6Unicast: p.NextHopIPv6} {
		if nh.IsValid() && !validNextHop(f, nh) {
			return invalidf("peer %q: %s next hop %v: must be a unicast address of that family without zone", p.Name, f, nh)
		}
	}
	return nil
}

// validNextHop reports whether nh can be the next hop of family f's routes.
func validNextHop(f Family, nh netip.Addr) bool {
	return familyOf(nh) == f && !nh.Is4In6() && !nh.IsUnspecified() && !nh.IsMulticast() && nh.Zone() == ""
}

// nextHop is the next hop of a's route to p: its own, else p's for its
// family; invalid means the session's local address.
func (p Peer) nextHop(a Advertisement) netip.Addr {
	if a.NextHop.IsValid() {
		return a.NextHop
	}
	if a.Prefix.Addr().Is4() {
		return p.NextHopIPv4
	}
	return p.NextHopIPv6
}

// validatePeers applies defaults to peers and checks each, and that names
// and addresses are unique. It returns the valid peers by name and the
// errors of the others, by name: one bad peer never stops the others. Of
// two peers with one address, the one that has it in cur (the peers
// configured now) keeps it, else the first by name.
func validatePeers(peers []Peer, cur map[string]Peer, routerID netip.Addr) (map[string]Peer, map[string]error) {
	peers = slices.Clone(peers)
	slices.SortStableFunc(peers, func(a, b Peer) int {
		_, ha := cur[a.Name]
		_, hb := cur[b.Name]
		heldA := ha && cur[a.Name].Address == a.Address
		heldB := hb && cur[b.Name].Address == b.Address
		switch {
		case heldA && !heldB:
			return -1
		case heldB && !heldA:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	byName := make(map[string]Peer, len(peers))
	byAddr := make(map[netip.Addr]string, len(peers))
	bad := map[string]error{}
	for _, p := range peers {
		p = withDefaults(p, routerID)
		if _, dup := byName[p.Name]; dup {
			bad[p.Name] = invalidf("peer %q: name given twice", p.Name)
			delete(byAddr, byName[p.Name].Address)
			delete(byName, p.Name)
			continue
		}
		if _, dup := bad[p.Name]; dup {
			continue
		}
		if err := validatePeer(p); err != nil {
			bad[p.Name] = err
			continue
		}
		if other, dup := byAddr[p.Address]; dup {
			bad[p.Name] = invalidf("peer %q: address %v already used by peer %q", p.Name, p.Address, other)
			continue
		}
		byName[p.Name] = p
		byAddr[p.Address] = p.Name
	}
	return byName, bad
}

// validateAdvertisement checks a against the peer it is for.
func validateAdvertisement(p Peer, a Advertisement) error {
	pfx := a.Prefix
	switch {
	case !pfx.IsValid():
		return invalidf("prefix %v: not a valid prefix", pfx)
	case pfx.Addr().Is4In6() || pfx.Addr().Zone() != "":
		return invalidf("prefix %v: IPv4-mapped and zoned prefixes are not supported", pfx)
	case pfx.Masked() != pfx:
		return invalidf("prefix %v: host bits set (did you mean %v?)", pfx, pfx.Masked())
	case !slices.Contains(p.Families, familyOf(pfx.Addr())):
		return invalidf("prefix %v: peer %q does not carry %s", pfx, p.Name, familyOf(pfx.Addr()))
	}
	if a.NextHop.IsValid() {
		if a.NextHop.Is4() != pfx.Addr().Is4() || a.NextHop.Is4In6() {
			return invalidf("prefix %v: next hop %v is not of the prefix's family", pfx, a.NextHop)
		}
		if a.NextHop.IsUnspecified() || a.NextHop.IsMulticast() || a.NextHop.Zone() != "" {
			return invalidf("prefix %v: next hop %v: must be a unicast address without zone", pfx, a.NextHop)
		}
	} else if !p.nextHop(a).IsValid() && familyOf(pfx.Addr()) != familyOf(p.Address) {
		return invalidf("prefix %v: needs a next hop: peer %q's session is over %s", pfx, p.Name, familyOf(p.Address))
	}
	return nil
}

// validateAdvertisements checks advs and returns them by prefix.
func validateAdvertisements(p Peer, advs []Advertisement) (map[netip.Prefix]Advertisement, error) {
	m := make(map[netip.Prefix]Advertisement, len(advs))
	for _, a := range advs {
		if err := validateAdvertisement(p, a); err != nil {
			return nil, err
		}
		if _, dup := m[a.Prefix]; dup {
			return nil, invalidf("prefix %v: given twice", a.Prefix)
		}
		m[a.Prefix] = normalize(a)
	}
	return m, nil
}
