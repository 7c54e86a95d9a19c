package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testRouterID is the Config.RouterID of the tests.
var testRouterID = netip.MustParseAddr("198.18.0.10")

func okPeer() Peer {
	return Peer{Name: "r1", Address: netip.MustParseAddr("198.18.0.1"), ASN: 65001, LocalASN: 65000}
}

func TestWithDefaults(t *testing.T) {
	got := withDefaults(okPeer(), testRouterID)
	want := okPeer()
	want.Port, want.HoldTime, want.KeepaliveTime = 179, 90*time.Second, 30*time.Second
	want.Families = []Family{IPv4Unicast}
	want.RouterID = testRouterID
	if diff := cmp.Diff(want, got, netipOpts()); diff != "" {
		t.Errorf("withDefaults (-want +got):\n%s", diff)
	}
	p := okPeer()
	p.HoldTime, p.GracefulRestart = 9*time.Second, true
	p.Families = []Family{IPv6Unicast, IPv4Unicast, IPv6Unicast}
	got = withDefaults(p, testRouterID)
	if got.KeepaliveTime != 3*time.Second || got.RestartTime != 120*time.Second || !cmp.Equal(got.Families, []Family{IPv4Unicast, IPv6Unicast}) {
		t.Errorf("withDefaults(hold 9s, GR, families) = %+v", got)
	}
}

func TestValidatePeers(t *testing.T) {
	mod := func(f func(*Peer)) []Peer { p := okPeer(); f(&p); return []Peer{p} }
	tests := []struct {
		name    string
		peers   []Peer
		wantErr string // substring; empty: valid
	}{
		{name: "ok", peers: []Peer{okPeer()}},
		{name: "ok v6 both families", peers: mod(func(p *Peer) {
			p.Address = netip.MustParseAddr("2001:db8::1")
			p.Families = []Family{IPv4Unicast, IPv6Unicast}
		})},
		{name: "no name", peers: mod(func(p *Peer) { p.Name = "" }), wantErr: "empty name"},
		{name: "no address", peers: mod(func(p *Peer) { p.Address = netip.Addr{} }), wantErr: "address"},
		{name: "unspecified address", peers: mod(func(p *Peer) { p.Address = netip.IPv4Unspecified() }), wantErr: "address"},
		{name: "mapped address", peers: mod(func(p *Peer) { p.Address = netip.MustParseAddr("::ffff:198.18.0.1") }), wantErr: "address"},
		{name: "ASN 0", peers: mod(func(p *Peer) { p.ASN = 0 }), wantErr: "must not be 0"},
		{name: "local ASN 0", peers: mod(func(p *Peer) { p.LocalASN = 0 }), wantErr: "must not be 0"},
		{name: "source family", peers: mod(func(p *Peer) { p.SourceAddress = netip.MustParseAddr("2001:db8::2") }), wantErr: "source address"},
		{name: "hold too short", peers: mod(func(p *Peer) { p.HoldTime = 2 * time.Second }), wantErr: "hold time"},
		{name: "keepalive over hold", peers: mod(func(p *Peer) { p.KeepaliveTime = 100 * time.Second }), wantErr: "keepalive"},
		{name: "gtsm and multihop", peers: mod(func(p *Peer) { p.TTLSecurity, p.EBGPMultihopTTL = true, 2 }), wantErr: "exclude"},
		{name: "multihop on ibgp", peers: mod(func(p *Peer) { p.ASN, p.EBGPMultihopTTL = 65000, 2 }), wantErr: "iBGP"},
		{name: "restart time", peers: mod(func(p *Peer) { p.GracefulRestart, p.RestartTime = true, 2*time.Hour }), wantErr: "restart time"},
		{name: "family", peers: mod(func(p *Peer) { p.Families = []Family{"l2vpn-evpn"} }), wantErr: "unknown family"},
		{name: "own router ID", peers: mod(func(p *Peer) { p.RouterID = netip.MustParseAddr("203.0.113.7") })},
		{name: "IPv6 router ID", peers: mod(func(p *Peer) { p.RouterID = netip.MustParseAddr("2001:db8::7") }), wantErr: "router ID"},
		{name: "next hops of both families", peers: mod(func(p *Peer) {
			p.Families = []Family{IPv4Unicast, IPv6Unicast}
			p.NextHopIPv4, p.NextHopIPv6 = netip.MustParseAddr("198.18.0.9"), netip.MustParseAddr("2001:db8::9")
		})},
		{name: "IPv6 next hop of IPv4", peers: mod(func(p *Peer) { p.NextHopIPv4 = netip.MustParseAddr("2001:db8::9") }), wantErr: "next hop"},
		{name: "mapped IPv6 next hop", peers: mod(func(p *Peer) { p.NextHopIPv6 = netip.MustParseAddr("::ffff:198.18.0.9") }), wantErr: "next hop"},
		{name: "zoned IPv6 next hop", peers: mod(func(p *Peer) { p.NextHopIPv6 = netip.MustParseAddr("fe80::1%eth0") }), wantErr: "next hop"},
		{name: "interface peer", peers: mod(func(p *Peer) {
			p.Address, p.Interface = netip.MustParseAddr("fe80::1%eth1"), "eth1"
			p.Families = []Family{IPv4Unicast, IPv6Unicast}
		})},
		{name: "zoned address without interface", peers: mod(func(p *Peer) { p.Address = netip.MustParseAddr("fe80::1%eth1") }), wantErr: "only for interface peers"},
		{name: "interface peer, unresolved", peers: mod(func(p *Peer) { p.Address, p.Interface = netip.Addr{}, "eth1" }), wantErr: "address"},
		{name: "interface peer, zone of another interface", peers: mod(func(p *Peer) { p.Address, p.Interface = netip.MustParseAddr("fe80::1%eth2"), "eth1" }), wantErr: `zoned with "eth1"`},
		{name: "interface peer, unzoned", peers: mod(func(p *Peer) { p.Address, p.Interface = netip.MustParseAddr("fe80::1"), "eth1" }), wantErr: `zoned with "eth1"`},
		{name: "interface peer, global address", peers: mod(func(p *Peer) { p.Address, p.Interface = netip.MustParseAddr("2001:db8::1%eth1"), "eth1" }), wantErr: "link-local"},
		{name: "interface peer, IPv4", peers: mod(func(p *Peer) { p.Interface = "eth1" }), wantErr: "link-local"},
		{name: "interface peer with source", peers: mod(func(p *Peer) {
			p.Address, p.Interface, p.SourceAddress = netip.MustParseAddr("fe80::1%eth1"), "eth1", netip.MustParseAddr("fe80::2")
		}), wantErr: "do not apply to an interface peer"},
		{name: "interface peer with multihop", peers: mod(func(p *Peer) {
			p.Address, p.Interface, p.EBGPMultihopTTL = netip.MustParseAddr("fe80::1%eth1"), "eth1", 2
		}), wantErr: "do not apply to an interface peer"},
		{name: "long password", peers: mod(func(p *Peer) { p.Password = strings.Repeat("x", 81) }), wantErr: "password"},
		{name: "duplicate name", peers: []Peer{okPeer(), okPeer()}, wantErr: "name given twice"},
		{name: "duplicate address", peers: func() []Peer {
			p := okPeer()
			p.Name = "r2"
			return []Peer{okPeer(), p}
		}(), wantErr: "already used"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, bad := validatePeers(tc.peers, nil, testRouterID)
			var err error
			for _, e := range bad {
				err = e
			}
			checkErr(t, err, tc.wantErr)
		})
	}
}

// TestValidatePeersAlone checks that each peer is valid or not on its own:
// a bad peer never makes a good one fail, and of two peers with one
// address the one configured now keeps it.
func TestValidatePeersAlone(t *testing.T) {
	named := func(name, addr string, mut ...func(*Peer)) Peer {
		p := okPeer()
		p.Name, p.Address = name, netip.MustParseAddr(addr)
		for _, m := range mut {
			m(&p)
		}
		return p
	}
	ibgpMultihop := func(p *Peer) { p.ASN, p.EBGPMultihopTTL = p.LocalASN, 2 }
	onIface := func(name string) func(*Peer) { return func(p *Peer) { p.Interface = name } }
	tests := []struct {
		name      string
		peers     []Peer
		cur       []Peer
		wantValid []string
		wantBad   []string
	}{
		{
			name:      "one invalid peer among good ones",
			peers:     []Peer{named("a", "198.18.0.1"), named("b", "198.18.0.2", ibgpMultihop), named("c", "198.18.0.3")},
			wantValid: []string{"a", "c"},
			wantBad:   []string{"b"},
		},
		{
			name:      "duplicate address: the first by name keeps it",
			peers:     []Peer{named("b", "198.18.0.1"), named("a", "198.18.0.1")},
			wantValid: []string{"a"},
			wantBad:   []string{"b"},
		},
		{
			name:      "duplicate address: the peer that has it keeps it",
			peers:     []Peer{named("b", "198.18.0.1"), named("a", "198.18.0.1")},
			cur:       []Peer{named("b", "198.18.0.1")},
			wantValid: []string{"b"},
			wantBad:   []string{"a"},
		},
		{
			name:      "one link-local neighbor on two interfaces: two addresses",
			peers:     []Peer{named("a", "fe80::1%eth1", onIface("eth1")), named("b", "fe80::1%eth2", onIface("eth2"))},
			wantValid: []string{"a", "b"},
			wantBad:   []string{},
		},
		{
			name:      "two interface peers on one interface: the first by name keeps it",
			peers:     []Peer{named("b", "fe80::1%eth1", onIface("eth1")), named("a", "fe80::1%eth1", onIface("eth1"))},
			wantValid: []string{"a"},
			wantBad:   []string{"b"},
		},
		{
			name:      "every peer bad",
			peers:     []Peer{named("a", "198.18.0.1", ibgpMultihop), named("b", "0.0.0.0")},
			wantValid: []string{},
			wantBad:   []string{"a", "b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := map[string]Peer{}
			for _, p := range tc.cur {
				cur[p.Name] = withDefaults(p, testRouterID)
			}
			valid, bad := validatePeers(tc.peers, cur, testRouterID)
			gotValid, gotBad := []string{}, []string{}
			for n := range valid {
				gotValid = append(gotValid, n)
			}
			for n, err := range bad {
				if !IsInvalid(err) {
					t.Errorf("peer %s: IsInvalid(%v) = false", n, err)
				}
				gotBad = append(gotBad, n)
			}
			sortStrings := cmpopts.SortSlices(func(a, b string) bool { return a < b })
			if diff := cmp.Diff(tc.wantValid, gotValid, sortStrings); diff != "" {
				t.Errorf("valid peers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantBad, gotBad, sortStrings); diff != "" {
				t.Errorf("bad peers (-want +got):\n%s", diff)
			}
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	case want != "" && !IsInvalid(err):
		t.Fatalf("IsInvalid(%v) = false", err)
	}
}

func TestValidateAdvertisements(t *testing.T) {
	v4 := withDefaults(okPeer(), testRouterID)
	v6 := okPeer()
	v6.Address = netip.MustParseAddr("2001:db8::1")
	v6 = withDefaults(v6, testRouterID)
	both := okPeer()
	both.Families = []Family{IPv4Unicast, IPv6Unicast}
	both = withDefaults(both, testRouterID)
	bothNH := both
	bothNH.NextHopIPv6 = netip.MustParseAddr("2001:db8::9")
	v6both := v6
	v6both.Families = []Family{IPv4Unicast, IPv6Unicast}
	v6bothNH := v6both
	v6bothNH.NextHopIPv4 = netip.MustParseAddr("198.18.0.9")
	adv := func(p, nh string) Advertisement {
		a := Advertisement{Prefix: netip.MustParsePrefix(p)}
		if nh != "" {
			a.NextHop = netip.MustParseAddr(nh)
		}
		return a
	}
	tests := []struct {
		name    string
		peer    Peer
		advs    []Advertisement
		wantErr string
	}{
		{name: "v4 /32", peer: v4, advs: []Advertisement{adv("198.51.100.1/32", "")}},
		{name: "v4 aggregate with next hop", peer: v4, advs: []Advertisement{adv("198.51.100.0/24", "198.18.0.9")}},
		{name: "v6 /128 on v6 session", peer: v6, advs: []Advertisement{adv("2001:db8:1::1/128", "")}},
		{name: "v6 over v4 with next hop", peer: both, advs: []Advertisement{adv("2001:db8:1::1/128", "2001:db8::9")}},
		{name: "v6 over v4 without next hop", peer: both, advs: []Advertisement{adv("2001:db8:1::1/128", "")}, wantErr: "needs a next hop"},
		{name: "v6 over v4 with the peer's next hop", peer: bothNH, advs: []Advertisement{adv("2001:db8:1::1/128", "")}},
		{name: "v4 over v6 without next hop", peer: v6both, advs: []Advertisement{adv("198.51.100.1/32", "")}, wantErr: "needs a next hop"},
		{name: "v4 over v6 with the peer's next hop", peer: v6bothNH, advs: []Advertisement{adv("198.51.100.1/32", "")}},
		{name: "v6 to a v4-only peer", peer: v4, advs: []Advertisement{adv("2001:db8:1::1/128", "2001:db8::9")}, wantErr: "does not carry ipv6-unicast"},
		{name: "v4 to a v6-only peer", peer: v6, advs: []Advertisement{adv("198.51.100.1/32", "198.18.0.9")}, wantErr: "does not carry ipv4-unicast"},
		{name: "invalid prefix", peer: v4, advs: []Advertisement{{}}, wantErr: "not a valid prefix"},
		{name: "host bits", peer: v4, advs: []Advertisement{adv("198.51.100.1/24", "")}, wantErr: "host bits"},
		{name: "mapped prefix", peer: v6, advs: []Advertisement{adv("::ffff:198.51.100.1/128", "")}, wantErr: "IPv4-mapped"},
		{name: "next hop family", peer: v4, advs: []Advertisement{adv("198.51.100.1/32", "2001:db8::9")}, wantErr: "not of the prefix's family"},
		{name: "next hop unspecified", peer: v4, advs: []Advertisement{adv("198.51.100.1/32", "0.0.0.0")}, wantErr: "unicast"},
		{name: "duplicate", peer: v4, advs: []Advertisement{adv("198.51.100.1/32", ""), adv("198.51.100.1/32", "198.18.0.9")}, wantErr: "given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validateAdvertisements(tc.peer, tc.advs)
			checkErr(t, err, tc.wantErr)
		})
	}
}

func TestValidateConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "ok", cfg: Config{RouterID: netip.MustParseAddr("198.18.0.2")}},
		{name: "no router ID: each peer has its own", cfg: Config{}},
		{name: "v6 router ID", cfg: Config{RouterID: netip.MustParseAddr("2001:db8::1")}, wantErr: "router ID"},
		{name: "zero router ID", cfg: Config{RouterID: netip.IPv4Unspecified()}, wantErr: "router ID"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkErr(t, validateConfig(tc.cfg), tc.wantErr) })
	}
}

// netipOpts compares netip values by ==, as their fields are unexported.
func netipOpts() cmp.Option {
	return cmp.Options{
		cmp.Comparer(func(x, y netip.Addr) bool { return x == y }),
		cmp.Comparer(func(x, y netip.Prefix) bool { return x == y }),
	}
}
