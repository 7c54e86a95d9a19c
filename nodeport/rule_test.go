package nodeport

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	good := r4("198.51.100.1", TCP, 80, "198.18.0.1", 30080)
	with := func(edit func(*Rule)) Rule { r := good; edit(&r); return r }
	tests := []struct {
		name    string
		rules   []Rule
		wantErr []string // substrings of the error, in order; nil means valid
		wantLen int
	}{
		{name: "none", rules: nil},
		{name: "one", rules: []Rule{good}, wantLen: 1},
		{name: "mixed families and protocols", rules: mixed, wantLen: len(mixed)},
		{name: "identical duplicate merged", rules: []Rule{good, good}, wantLen: 1},
		{name: "same address and port, other protocol", rules: []Rule{good, with(func(r *Rule) { r.Protocol = UDP })}, wantLen: 2},
		{name: "family mismatch", rules: []Rule{with(func(r *Rule) { r.NodeIP = netip.MustParseAddr("2001:db8:1::1") })},
			wantErr: []string{"198.51.100.1:80/TCP->[2001:db8:1::1]:30080", "different families"}},
		{name: "port 0", rules: []Rule{with(func(r *Rule) { r.Port = 0 })}, wantErr: []string{"port is 0"}},
		{name: "node port 0", rules: []Rule{with(func(r *Rule) { r.NodePort = 0 })}, wantErr: []string{"node port is 0"}},
		{name: "unknown protocol", rules: []Rule{with(func(r *Rule) { r.Protocol = "tcp" })}, wantErr: []string{`unknown protocol "tcp"`}},
		{name: "empty protocol", rules: []Rule{with(func(r *Rule) { r.Protocol = "" })}, wantErr: []string{`unknown protocol ""`}},
		{name: "no address", rules: []Rule{with(func(r *Rule) { r.Address = netip.Addr{} })}, wantErr: []string{"address is not set"}},
		{name: "no node IP", rules: []Rule{with(func(r *Rule) { r.NodeIP = netip.Addr{} })}, wantErr: []string{"node IP is not set"}},
		{name: "unspecified", rules: []Rule{with(func(r *Rule) { r.Address = netip.IPv4Unspecified() })}, wantErr: []string{"unspecified"}},
		{name: "zone", rules: []Rule{r4("fe80::1%eth0", TCP, 80, "fe80::2", 30080)}, wantErr: []string{"zone"}},
		{name: "restricted, no ranges", rules: []Rule{with(func(r *Rule) { r.Restricted = true })}, wantLen: 1},
		{name: "ranges without Restricted", rules: []Rule{with(func(r *Rule) { r.SourceRanges = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })},
			wantErr: []string{"source ranges without Restricted"}},
		{name: "invalid range", rules: []Rule{with(func(r *Rule) { r.Restricted, r.SourceRanges = true, []netip.Prefix{{}} })},
			wantErr: []string{"invalid source range"}},
		{name: "same key, other ranges", rules: []Rule{good, with(func(r *Rule) { r.Restricted = true })},
			wantErr: []string{"conflicts with rule 198.51.100.1:80/TCP->198.18.0.1:30080"}},
		{name: "conflicting duplicate", rules: []Rule{good, with(func(r *Rule) { r.NodePort = 31000 })},
			wantErr: []string{"invalid rule 198.51.100.1:80/TCP->198.18.0.1:31000", "conflicts with rule 198.51.100.1:80/TCP->198.18.0.1:30080"}},
		{name: "one address to two node IPs", rules: []Rule{good, r4("198.51.100.1", UDP, 53, "198.18.0.2", 30053)},
			wantErr: []string{"invalid rule 198.51.100.1:53/UDP->198.18.0.2:30053", "conflicts with rule 198.51.100.1:80/TCP->198.18.0.1:30080", "one node IP"}},
		{name: "two addresses to one node IP and NodePort", rules: []Rule{good, r4("198.51.100.2", TCP, 80, "198.18.0.1", 30080)}, wantLen: 2},
		{name: "every problem reported", rules: []Rule{with(func(r *Rule) { r.Port = 0 }), good, with(func(r *Rule) { r.Protocol = "ICMP" })},
			wantErr: []string{"port is 0", `unknown protocol "ICMP"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, _, errs := validate(tc.rules)
			var err error
			if len(errs) > 0 {
				err = errors.Join(errs...)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				if len(set.targets) != tc.wantLen {
					t.Errorf("got %d rules, want %d", len(set.targets), tc.wantLen)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate succeeded, want error containing %q", tc.wantErr)
			}
			if !IsInvalidRule(err) {
				t.Errorf("IsInvalidRule(%v) = false", err)
			}
			msg := err.Error()
			for _, want := range tc.wantErr {
				i := strings.Index(msg, want)
				if i < 0 {
					t.Fatalf("error %q does not contain %q (in order)", err, want)
				}
				msg = msg[i+len(want):]
			}
		})
	}
}

// TestSyncInvalidLeavesOthers checks that a bad rule among good ones is
// left out and the others are programmed.
func TestSyncInvalidLeavesOthers(t *testing.T) {
	f, _, ns, ctx := newNFTForwarder(t, "i")
	if err := f.Sync(ctx, oneTCP); err != nil {
		t.Fatal(err)
	}
	bad := r4("198.51.100.9", TCP, 80, "2001:db8:1::1", 30080)
	conflict := r4("198.51.100.1", TCP, 80, "198.18.0.1", 31999) // same key as mixed[0], after it
	rules := slices.Concat([]Rule{bad}, mixed, []Rule{conflict})
	err := f.Sync(ctx, rules)
	if !IsInvalidRule(err) || !strings.Contains(err.Error(), bad.String()) || !strings.Contains(err.Error(), conflict.String()) {
		t.Fatalf("Sync: got %v, want invalid-rule errors naming %s and %s", err, bad, conflict)
	}
	expectElements(t, ns, mixed)
	if got := f.NotProgrammed(); got != 2 {
		t.Errorf("NotProgrammed = %d, want 2", got)
	}
	if drifted, err := f.Check(ctx); err != nil || drifted {
		t.Errorf("Check after Sync = %v, %v; want false, nil", drifted, err)
	}
	if err := f.Sync(ctx, mixed); err != nil || f.NotProgrammed() != 0 {
		t.Errorf("Sync of the good rules = %v, NotProgrammed %d; want nil, 0", err, f.NotProgrammed())
	}
}

func TestRanges(t *testing.T) {
	p := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, c := range s {
			out = append(out, netip.MustParsePrefix(c))
		}
		return out
	}
	v4, v6 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name string
		addr netip.Addr
		in   []netip.Prefix
		want []string
	}{
		{"none", v4, nil, nil},
		{"other family only", v4, p("2001:db8::/32"), nil},
		{"overlapping and touching merged", v4, p("192.0.2.128/25", "192.0.2.0/25", "192.0.2.64/26", "203.0.113.7/32"),
			[]string{"192.0.2.0/24", "203.0.113.7/32"}},
		{"not a prefix once merged", v4, p("192.0.2.0/24", "192.0.3.0/25"), []string{"192.0.2.0-192.0.3.127"}},
		{"everything", v4, p("0.0.0.0/0", "10.0.0.0/8"), []string{"0.0.0.0/0"}},
		{"the last address", v4, p("255.255.255.255/32", "255.255.255.254/32"), []string{"255.255.255.254/31"}},
		{"IPv6", v6, p("2001:db8:9::/48", "10.0.0.0/8", "::/0"), []string{"::/0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range ranges(tc.addr, tc.in) {
				got = append(got, r.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ranges = %q, want %q", got, tc.want)
			}
		})
	}
}
