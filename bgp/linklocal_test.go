package bgp

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPickLinkLocal(t *testing.T) {
	a := netip.MustParseAddr
	own := []netip.Addr{a("fe80::aa"), a("2001:db8::aa")}
	tests := []struct {
		name    string
		neighs  []neighbor
		want    string
		wantErr string
	}{
		{name: "empty table", wantErr: "has no IPv6 link-local neighbor yet"},
		{name: "one router", neighs: []neighbor{{a("fe80::1"), true}}, want: "fe80::1%eth1"},
		{name: "global neighbors do not count", neighs: []neighbor{{a("2001:db8::1"), true}, {a("fe80::1"), true}}, want: "fe80::1%eth1"},
		{name: "only a global neighbor", neighs: []neighbor{{a("2001:db8::1"), true}}, wantErr: "no IPv6 link-local neighbor"},
		{name: "failed entry", neighs: []neighbor{{a("fe80::1"), false}}, wantErr: "no IPv6 link-local neighbor"},
		{name: "failed entry beside a live one", neighs: []neighbor{{a("fe80::9"), false}, {a("fe80::1"), true}}, want: "fe80::1%eth1"},
		{name: "the node's own address", neighs: []neighbor{{a("fe80::aa"), true}, {a("fe80::1"), true}}, want: "fe80::1%eth1"},
		{name: "multicast", neighs: []neighbor{{a("ff02::1"), true}}, wantErr: "no IPv6 link-local neighbor"},
		{name: "same address twice", neighs: []neighbor{{a("fe80::1"), true}, {a("fe80::1%eth1"), true}}, want: "fe80::1%eth1"},
		{name: "two routers", neighs: []neighbor{{a("fe80::2"), true}, {a("fe80::1"), true}}, wantErr: "has 2 IPv6 link-local neighbors (fe80::1, fe80::2): an interface peer needs a point-to-point link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickLinkLocal("eth1", tc.neighs, own)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("pickLinkLocal = %v, %v; want error containing %q", got, err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Fatalf("pickLinkLocal: %v", err)
			case tc.wantErr == "" && got != netip.MustParseAddr(tc.want):
				t.Fatalf("pickLinkLocal = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAPIPeerInterface(t *testing.T) {
	p := withDefaults(Peer{Name: "up", Interface: "eth1", Address: netip.MustParseAddr("fe80::1%eth1"), ASN: 65001, LocalASN: 65000}, testRouterID)
	ap := apiPeer(p, 100)
	if got := ap.GetConf().GetNeighborAddress(); got != "fe80::1%eth1" {
		t.Errorf("neighbor address = %q, want the zoned link-local address", got)
	}
	if got := ap.GetTransport().GetLocalAddress(); got != "::" {
		t.Errorf("local address = %q, want :: (the kernel's link-local choice)", got)
	}
	if got := ap.GetConf().GetNeighborInterface(); got != "" {
		t.Errorf("neighbor interface = %q, want none (Berth resolves it)", got)
	}
	if fams := p.Families; len(fams) != 1 || fams[0] != IPv6Unicast {
		t.Errorf("default families = %v, want IPv6 only (the session's family)", fams)
	}
}
