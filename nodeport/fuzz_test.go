package nodeport

import (
	"github.com/berthlb/berth/config"
	"net/netip"
	"strings"
	"testing"
)

// FuzzSourceRanges parses a Service's source ranges (comma-separated, as
// the annotation carries them) and checks what the table would hold: an
// error never comes with ranges (fail closed), and the merged ranges of
// each family are sorted, disjoint, not touching, and contain exactly the
// addresses the parsed prefixes of that family contain.
func FuzzSourceRanges(f *testing.F) {
	for _, s := range []string{"", "10.0.0.0/8", " 192.0.2.0/25 ,192.0.2.128/25", "0.0.0.0/0,::/0", "2001:db8::1/64,10.0.0.1",
		"255.255.255.255/32,255.255.255.254/32", "::ffff:10.0.0.0/104", "fe80::/10%eth0", "1.2.3.4/33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := config.ParseSourceRanges(strings.Split(s, ","))
		if err != nil {
			if ps != nil {
				t.Fatalf("config.ParseSourceRanges(%q) returned %v with error %v", s, ps, err)
			}
			return
		}
		for _, addr := range []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")} {
			rs := ranges(addr, ps)
			for i, r := range rs {
				if r.from.Is4() != addr.Is4() || r.to.Compare(r.from) < 0 {
					t.Fatalf("range %v of %q for %s is of the wrong family or empty", r, s, addr)
				}
				if i > 0 {
					if next := rs[i-1].to.Next(); !next.IsValid() || next.Compare(r.from) >= 0 {
						t.Fatalf("ranges %v and %v of %q overlap, touch or are unsorted", rs[i-1], r, s)
					}
				}
			}
			if got := decodeRanges(encodeRanges(rs), addr.BitLen()/8); len(got) != len(rs) {
				t.Fatalf("encodeRanges round trip of %v: %v", rs, got)
			}
			// Every prefix's first and last address is inside a range, and
			// the addresses just outside a range are in no prefix.
			in := func(a netip.Addr) bool {
				for _, p := range ps {
					if p.Addr().Is4() == a.Is4() && p.Contains(a) {
						return true
					}
				}
				return false
			}
			covered := func(a netip.Addr) bool {
				for _, r := range rs {
					if r.from.Compare(a) <= 0 && a.Compare(r.to) <= 0 {
						return true
					}
				}
				return false
			}
			for _, p := range ps {
				if p.Addr().Is4() == addr.Is4() && (!covered(p.Masked().Addr()) || !covered(lastAddr(p))) {
					t.Fatalf("prefix %v of %q is not covered by %v", p, s, rs)
				}
			}
			for _, r := range rs {
				if !in(r.from) || !in(r.to) {
					t.Fatalf("range %v of %q holds addresses no prefix holds", r, s)
				}
				for _, out := range []netip.Addr{r.from.Prev(), r.to.Next()} {
					if out.IsValid() && in(out) {
						t.Fatalf("%v, just outside range %v of %q, is in a prefix", out, r, s)
					}
				}
				if a := r.String(); a == "" {
					t.Fatalf("empty spelling of %v", r)
				}
			}
		}
	})
}
