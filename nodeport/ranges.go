package nodeport

import (
	"net/netip"
	"slices"
)

// addrRange is an inclusive range of addresses of one family.
type addrRange struct {
	from, to netip.Addr
}

// String spells r as nft lists it: a prefix if it is one, else from-to.
func (r addrRange) String() string {
	for bits := 0; bits <= r.from.BitLen(); bits++ {
		if p := netip.PrefixFrom(r.from, bits); p.Masked().Addr() == r.from && lastAddr(p) == r.to {
			return p.String()
		}
	}
	return r.from.String() + "-" + r.to.String()
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ranges returns the ranges covered by the prefixes of ps that are of the
// family of addr, sorted and merged where they overlap or touch: an
// interval set refuses overlapping elements, and fewer elements are
// cheaper. Prefixes of the other family do not apply to addr and are left
// out (kube-proxy does the same); if none is left, no client may connect.
func ranges(addr netip.Addr, ps []netip.Prefix) []addrRange {
	var rs []addrRange
	for _, p := range ps {
		p = p.Masked()
		if p.Addr().Is4() != addr.Is4() {
			continue
		}
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.from.Compare(b.from) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.to.Next(); !next.IsValid() || r.from.Compare(next) <= 0 {
				if r.to.Compare(last.to) > 0 {
					last.to = r.to
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// encodeRanges and decodeRanges turn ranges into a comparable string (the
// addresses' bytes, from and to of each range) and back, so that a target
// stays comparable.
func encodeRanges(rs []addrRange) string {
	var b []byte
	for _, r := range rs {
		b = append(append(b, r.from.AsSlice()...), r.to.AsSlice()...)
	}
	return string(b)
}

func decodeRanges(s string, addrLen int) []addrRange {
	var out []addrRange
	for len(s) >= 2*addrLen {
		from, _ := netip.AddrFromSlice([]byte(s[:addrLen]))
		to, _ := netip.AddrFromSlice([]byte(s[addrLen : 2*addrLen]))
		out = append(out, addrRange{from, to})
		s = s[2*addrLen:]
	}
	return out
}
