package nodeport

import (
	"net/netip"
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
			set, _, err := validate(tc.rules)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				if len(set) != tc.wantLen {
					t.Errorf("got %d rules, want %d", len(set), tc.wantLen)
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

// TestSyncInvalidWritesNothing checks that a bad rule among good ones leaves
// the table as it was.
func TestSyncInvalidWritesNothing(t *testing.T) {
	f, rec, ns, ctx := newNFTForwarder(t, "i")
	if err := f.Sync(ctx, oneTCP); err != nil {
		t.Fatal(err)
	}
	before, log := listTable(t, ns), rec.log.String()
	bad := append([]Rule{r4("198.51.100.9", TCP, 80, "2001:db8:1::1", 30080)}, mixed...)
	if err := f.Sync(ctx, bad); !IsInvalidRule(err) {
		t.Fatalf("Sync: got %v, want an invalid-rule error", err)
	}
	if rec.log.String() != log || listTable(t, ns) != before {
		t.Errorf("invalid Sync ran a transaction:\n%s", strings.TrimPrefix(rec.log.String(), log))
	}
	if drifted, err := f.Check(ctx); err != nil || drifted {
		t.Errorf("Check after refused Sync = %v, %v; want false, nil", drifted, err)
	}
}
