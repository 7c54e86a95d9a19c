package bgp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

func routes(advs ...Advertisement) map[netip.Prefix]Advertisement {
	m := map[netip.Prefix]Advertisement{}
	for _, a := range advs {
		m[a.Prefix] = normalize(a)
	}
	return m
}

func TestDiffAdvertisements(t *testing.T) {
	p1 := netip.MustParsePrefix("198.51.100.1/32")
	p2 := netip.MustParsePrefix("198.51.100.2/32")
	p6 := netip.MustParsePrefix("2001:db8:1::1/128")
	a1 := Advertisement{Prefix: p1, Communities: []uint32{2, 1}}
	a1same := Advertisement{Prefix: p1, Communities: []uint32{1, 2, 2}}
	a1lp := Advertisement{Prefix: p1, Communities: []uint32{1, 2}, LocalPref: ptr[uint32](200)}
	a1lp2 := Advertisement{Prefix: p1, Communities: []uint32{1, 2}, LocalPref: ptr[uint32](300)}
	a1nh := Advertisement{Prefix: p1, NextHop: netip.MustParseAddr("198.18.0.9"), Communities: []uint32{1, 2}}
	a1lc := Advertisement{Prefix: p1, Communities: []uint32{1, 2}, LargeCommunities: []LargeCommunity{{1, 2, 3}}}
	a2 := Advertisement{Prefix: p2}
	a6 := Advertisement{Prefix: p6}
	tests := []struct {
		name         string
		cur, want    map[netip.Prefix]Advertisement
		wantAnnounce []Advertisement
		wantWithdraw []netip.Prefix
	}{
		{name: "empty", cur: routes(), want: routes()},
		{name: "add to empty", cur: routes(), want: routes(a6, a2, a1), wantAnnounce: []Advertisement{normalize(a1), a2, a6}},
		{name: "unchanged", cur: routes(a1, a2), want: routes(a1, a2)},
		{name: "same communities, other order", cur: routes(a1), want: routes(a1same)},
		{name: "add one", cur: routes(a1), want: routes(a1, a2), wantAnnounce: []Advertisement{a2}},
		{name: "withdraw one", cur: routes(a1, a2, a6), want: routes(a2), wantWithdraw: []netip.Prefix{p1, p6}},
		{name: "withdraw all", cur: routes(a1, a2), want: routes(), wantWithdraw: []netip.Prefix{p1, p2}},
		{name: "local pref set", cur: routes(a1), want: routes(a1lp), wantAnnounce: []Advertisement{a1lp}},
		{name: "local pref changed", cur: routes(a1lp), want: routes(a1lp2), wantAnnounce: []Advertisement{a1lp2}},
		{name: "local pref unset", cur: routes(a1lp), want: routes(a1), wantAnnounce: []Advertisement{normalize(a1)}},
		{name: "next hop changed", cur: routes(a1), want: routes(a1nh), wantAnnounce: []Advertisement{a1nh}},
		{name: "large community added", cur: routes(a1), want: routes(a1lc), wantAnnounce: []Advertisement{a1lc}},
		{name: "replace and withdraw", cur: routes(a1, a2), want: routes(a1lc, a6), wantAnnounce: []Advertisement{a1lc, a6}, wantWithdraw: []netip.Prefix{p2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			announce, withdraw := diffAdvertisements(tc.cur, tc.want)
			if diff := cmp.Diff(tc.wantAnnounce, announce, netipOpts()); diff != "" {
				t.Errorf("announce (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWithdraw, withdraw, netipOpts()); diff != "" {
				t.Errorf("withdraw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffPeers(t *testing.T) {
	a := withDefaults(okPeer(), testRouterID)
	b := okPeer()
	b.Name, b.Address = "r2", netip.MustParseAddr("198.18.0.2")
	b = withDefaults(b, testRouterID)
	bPw := b
	bPw.Password = "secret"
	bFam := b
	bFam.Families = []Family{IPv4Unicast, IPv6Unicast}
	c := okPeer()
	c.Name, c.Address = "r3", netip.MustParseAddr("198.18.0.3")
	c = withDefaults(c, testRouterID)
	// An interface peer is keyed by its resolved address like any peer: a
	// new link-local neighbor (the router was replaced) resets it.
	u := okPeer()
	u.Name, u.Interface, u.Address = "up", "eth1", netip.MustParseAddr("fe80::1%eth1")
	u = withDefaults(u, testRouterID)
	uNew := u
	uNew.Address = netip.MustParseAddr("fe80::2%eth1")
	byName := func(ps ...Peer) map[string]Peer {
		m := map[string]Peer{}
		for _, p := range ps {
			m[p.Name] = p
		}
		return m
	}
	tests := []struct {
		name                string
		cur, want           map[string]Peer
		add, remove, resetN []string
	}{
		{name: "empty", cur: byName(), want: byName()},
		{name: "add", cur: byName(a), want: byName(a, b), add: []string{"r2"}},
		{name: "remove", cur: byName(a, b), want: byName(b), remove: []string{"r1"}},
		{name: "unchanged", cur: byName(a, b), want: byName(a, b)},
		{name: "password changed", cur: byName(a, b), want: byName(a, bPw), resetN: []string{"r2"}},
		{name: "families changed", cur: byName(a, b), want: byName(a, bFam), resetN: []string{"r2"}},
		{name: "interface peer unchanged", cur: byName(a, u), want: byName(a, u)},
		{name: "interface peer's neighbor changed", cur: byName(a, u), want: byName(a, uNew), resetN: []string{"up"}},
		{name: "all at once", cur: byName(a, b), want: byName(bPw, c), add: []string{"r3"}, remove: []string{"r1"}, resetN: []string{"r2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			add, remove, reset := diffPeers(tc.cur, tc.want)
			if diff := cmp.Diff([][]string{tc.add, tc.remove, tc.resetN}, [][]string{add, remove, reset}); diff != "" {
				t.Errorf("add, remove, reset (-want +got):\n%s", diff)
			}
		})
	}
}
