package allocator

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRange(t *testing.T) {
	r := func(first, last string) Range { return Range{First: addr(first), Last: addr(last)} }
	tests := []struct {
		in      string
		want    Range
		wantErr string // the exact message; "" for success
	}{
		{in: "198.51.100.0/24", want: r("198.51.100.0", "198.51.100.255")},
		{in: "198.51.100.7/32", want: r("198.51.100.7", "198.51.100.7")},
		{in: "0.0.0.0/0", want: r("0.0.0.0", "255.255.255.255")},
		{in: "2001:db8::/64", want: r("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff")},
		{in: "2001:db8::/48", want: r("2001:db8::", "2001:db8:0:ffff:ffff:ffff:ffff:ffff")},
		{in: "::/0", want: r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
		{in: "2001:db8::1/128", want: r("2001:db8::1", "2001:db8::1")},
		{in: "198.51.100.10-198.51.100.20", want: r("198.51.100.10", "198.51.100.20")},
		{in: "198.51.100.10 - 198.51.100.20", want: r("198.51.100.10", "198.51.100.20")},
		{in: "  198.51.100.10 -198.51.100.10 ", want: r("198.51.100.10", "198.51.100.10")},
		{in: "2001:db8::1-2001:db8::1:0", want: r("2001:db8::1", "2001:db8::1:0")},
		{in: "198.51.100.7", want: r("198.51.100.7", "198.51.100.7")},
		{in: " 2001:db8::7 ", want: r("2001:db8::7", "2001:db8::7")},
		{in: "", wantErr: "empty address range"},
		{in: "   ", wantErr: "empty address range"},
		{in: "lan", wantErr: `"lan" is not an IP address, CIDR or address range (want e.g. 198.51.100.7, 198.51.100.0/24 or 198.51.100.10-198.51.100.20)`},
		{in: "198.51.100.256", wantErr: `"198.51.100.256" is not an IP address, CIDR or address range (want e.g. 198.51.100.7, 198.51.100.0/24 or 198.51.100.10-198.51.100.20)`},
		{in: "198.51.100.1/24", wantErr: "198.51.100.1/24 has host bits set; did you mean 198.51.100.0/24?"},
		{in: "2001:db8::1/64", wantErr: "2001:db8::1/64 has host bits set; did you mean 2001:db8::/64?"},
		{in: "198.51.100.0/33", wantErr: `"198.51.100.0/33" is not a valid CIDR (want e.g. 198.51.100.0/24 or 2001:db8::/64)`},
		{in: "198.51.100.20-198.51.100.10", wantErr: `"198.51.100.20-198.51.100.10" is reversed: 198.51.100.20 comes after 198.51.100.10; did you mean 198.51.100.10-198.51.100.20?`},
		{in: "198.51.100.1-2001:db8::1", wantErr: `"198.51.100.1-2001:db8::1" mixes IPv4 and IPv6 addresses`},
		{in: "2001:db8::1-198.51.100.1", wantErr: `"2001:db8::1-198.51.100.1" mixes IPv4 and IPv6 addresses`},
		{in: "198.51.100.1-", wantErr: `"198.51.100.1-": "" is not an IP address`},
		{in: "198.51.100.1-198.51.100.2-198.51.100.3", wantErr: `"198.51.100.1-198.51.100.2-198.51.100.3": "198.51.100.2-198.51.100.3" is not an IP address`},
		{in: "fe80::1%eth0", wantErr: `"fe80::1%eth0" has a zone; pool addresses cannot be zoned`},
		{in: "fe80::1%eth-0-fe80::2", wantErr: `"fe80::1%eth-0-fe80::2" has a zone; pool addresses cannot be zoned`},
		{in: "fe80::%eth0/64", wantErr: `"fe80::%eth0/64" has a zone; pool addresses cannot be zoned`},
		{in: "::ffff:198.51.100.7", wantErr: `"::ffff:198.51.100.7": ::ffff:198.51.100.7 is an IPv4-mapped IPv6 address; write 198.51.100.7 instead`},
		{in: "::ffff:198.51.100.0/120", wantErr: `"::ffff:198.51.100.0/120" is an IPv4-mapped IPv6 CIDR; write 198.51.100.0/24 instead`},
		{in: "::ffff:0:0/96", wantErr: `"::ffff:0:0/96" is an IPv4-mapped IPv6 CIDR; write 0.0.0.0/0 instead`},
		{in: "::ffff:198.51.100.1-::ffff:198.51.100.9", wantErr: `"::ffff:198.51.100.1-::ffff:198.51.100.9": ::ffff:198.51.100.1 is an IPv4-mapped IPv6 address; write 198.51.100.1 instead`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRange(tt.in)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr {
				t.Fatalf("ParseRange(%q) error = %q, want %q", tt.in, gotErr, tt.wantErr)
			}
			if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("ParseRange(%q) (-want +got):\n%s", tt.in, d)
			}
		})
	}
}

func TestRangeString(t *testing.T) {
	tests := []struct{ first, last, want string }{
		{"198.51.100.7", "198.51.100.7", "198.51.100.7"},
		{"198.51.100.0", "198.51.100.255", "198.51.100.0/24"},
		{"198.51.100.0", "198.51.100.254", "198.51.100.0-198.51.100.254"},
		{"198.51.100.1", "198.51.100.2", "198.51.100.1-198.51.100.2"},
		{"198.51.100.2", "198.51.100.3", "198.51.100.2/31"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64"},
		{"2001:db8::", "2001:db8::5", "2001:db8::-2001:db8::5"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			r := Range{First: addr(tt.first), Last: addr(tt.last)}
			if got := r.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			back, err := ParseRange(r.String())
			if err != nil || back != r {
				t.Errorf("ParseRange(String()) = %v, %v; want %v", back, err, r)
			}
		})
	}
	if got := (Range{First: addr("198.51.100.9"), Last: addr("198.51.100.1")}).String(); !strings.HasPrefix(got, "invalid range") {
		t.Errorf("reversed Range.String() = %q, want it flagged invalid", got)
	}
}

func TestRangeContains(t *testing.T) {
	r := rng("198.51.100.10-198.51.100.20")[0]
	tests := []struct {
		a    netip.Addr
		want bool
	}{
		{addr("198.51.100.10"), true},
		{addr("198.51.100.20"), true},
		{addr("198.51.100.9"), false},
		{addr("198.51.100.21"), false},
		{addr("::ffff:198.51.100.15"), false}, // other family, even if mapped
		{netip.Addr{}, false},
	}
	for _, tt := range tests {
		if got := r.Contains(tt.a); got != tt.want {
			t.Errorf("Contains(%v) = %v, want %v", tt.a, got, tt.want)
		}
	}
	if (Range{}).Contains(addr("198.51.100.10")) {
		t.Error("the zero Range contains an address")
	}
}
