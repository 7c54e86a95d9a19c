package allocator

import (
	"fmt"
	"net/netip"
	"strings"
)

// Family is an IP family. Its values are the conventional version numbers so
// that they print and log meaningfully.
type Family int

// The IP families a Service can ask for.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6", the words used in error messages.
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", int(f))
}

// familyOf returns the family of a valid address. IPv4-mapped IPv6 addresses
// are IPv6: the allocator compares addresses exactly as netip does.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func (f Family) bits() int {
	if f == IPv4 {
		return 32
	}
	return 128
}

// Range is an inclusive range of addresses of one family.
type Range struct{ First, Last netip.Addr }

// valid reports whether r can be used by the allocator. Pools come from a
// config layer that validates them, but the allocator must not crash or
// misbehave on anything, so invalid ranges are ignored.
func (r Range) valid() bool {
	return r.First.IsValid() && r.Last.IsValid() && r.First.Is4() == r.Last.Is4() &&
		r.First.Zone() == "" && r.Last.Zone() == "" && r.First.Compare(r.Last) <= 0
}

// Family returns the family of the range's addresses.
func (r Range) Family() Family { return familyOf(r.First) }

// Contains reports whether a lies within r. Addresses of the other family
// are never contained, so a range never claims a stray IPv4-mapped address.
func (r Range) Contains(a netip.Addr) bool {
	return r.valid() && a.IsValid() && a.Zone() == "" && a.Is4() == r.First.Is4() &&
		r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// String formats r in the shortest form ParseRange accepts: a single
// address, a CIDR when r is exactly one, or "first-last". ParseRange of the
// result returns r again.
func (r Range) String() string {
	if !r.valid() {
		return fmt.Sprintf("invalid range %s-%s", r.First, r.Last)
	}
	if r.First == r.Last {
		return r.First.String()
	}
	f := r.Family()
	first, last := u128From(r.First), u128From(r.Last)
	host := first.xor(last).onesCount()
	if p := netip.PrefixFrom(r.First, f.bits()-host); p.Masked().Addr() == r.First &&
		first.or(lowMask(host)) == last {
		return p.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// ParseRange parses "198.51.100.0/24", "2001:db8::/64",
// "198.51.100.10-198.51.100.20" (spaces around '-' allowed) or a single
// address. It rejects what is almost certainly a typo rather than guessing:
// reversed ranges, mixed families, zoned and IPv4-mapped IPv6 addresses, and
// CIDRs with host bits set. Every error names the offending entry.
func ParseRange(s string) (Range, error) {
	in := strings.TrimSpace(s)
	switch {
	case in == "":
		return Range{}, fmt.Errorf("empty address range")
	case strings.Contains(in, "%"):
		return Range{}, fmt.Errorf("%q has a zone; pool addresses cannot be zoned", in)
	case strings.Contains(in, "/"):
		return parsePrefix(in)
	case strings.Contains(in, "-"):
		first, last, _ := strings.Cut(in, "-")
		return parsePair(in, strings.TrimSpace(first), strings.TrimSpace(last))
	}
	a, err := parseAddr(in, in)
	if err != nil {
		return Range{}, err
	}
	return Range{First: a, Last: a}, nil
}

func parsePrefix(in string) (Range, error) {
	p, err := netip.ParsePrefix(in)
	if err != nil {
		return Range{}, fmt.Errorf("%q is not a valid CIDR (want e.g. 198.51.100.0/24 or 2001:db8::/64)", in)
	}
	if p.Addr().Is4In6() {
		hint := ""
		if p.Bits() >= 96 {
			hint = fmt.Sprintf("; write %s instead", netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked())
		}
		return Range{}, fmt.Errorf("%q is an IPv4-mapped IPv6 CIDR%s", in, hint)
	}
	if m := p.Masked(); m != p {
		return Range{}, fmt.Errorf("%s has host bits set; did you mean %s?", p, m)
	}
	r := prefixRange(p)
	if r.Last.Is4In6() {
		// ::/80, say: its last address is ::ffff:255.255.255.255. A range
		// never ends at an IPv4-mapped address, whichever way it is
		// written (parsePair refuses them too), so that it reads back the
		// same as first-last.
		return Range{}, fmt.Errorf("%s ends at the IPv4-mapped address %s; pool ranges cannot end in ::ffff:0:0/96", p, r.Last)
	}
	return r, nil
}

// prefixRange returns the addresses of the masked prefix p as a range.
func prefixRange(p netip.Prefix) Range {
	p = p.Masked()
	f := familyOf(p.Addr())
	last := u128From(p.Addr()).or(lowMask(f.bits() - p.Bits())).addr(f)
	return Range{First: p.Addr(), Last: last}
}

func parsePair(in, first, last string) (Range, error) {
	a, err := parseAddr(in, first)
	if err != nil {
		return Range{}, err
	}
	b, err := parseAddr(in, last)
	if err != nil {
		return Range{}, err
	}
	if a.Is4() != b.Is4() {
		return Range{}, fmt.Errorf("%q mixes IPv4 and IPv6 addresses", in)
	}
	if a.Compare(b) > 0 {
		return Range{}, fmt.Errorf("%q is reversed: %s comes after %s; did you mean %s-%s?", in, a, b, b, a)
	}
	return Range{First: a, Last: b}, nil
}

// parseAddr parses one address of the entry in, naming in in errors.
func parseAddr(in, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if s == in {
			return netip.Addr{}, fmt.Errorf("%q is not an IP address, CIDR or address range (want e.g. 198.51.100.7, 198.51.100.0/24 or 198.51.100.10-198.51.100.20)", in)
		}
		return netip.Addr{}, fmt.Errorf("%q: %q is not an IP address", in, s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q: %s is an IPv4-mapped IPv6 address; write %s instead", in, a, a.Unmap())
	}
	return a, nil
}
