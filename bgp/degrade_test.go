package bgp

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// offlineServer is a Server whose peers need not be reachable: sessions
// are only dialled once a peer is advertised to.
func offlineServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(context.Background(), Config{RouterID: netip.MustParseAddr("198.18.0.10")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

// TestSetPeersPerPeer checks with real GoBGP instances (no session needs
// to come up) that a peer the speaker cannot accept fails alone: the others
// are applied, and the bad peer keeps the configuration it had.
func TestSetPeersPerPeer(t *testing.T) {
	ctx := context.Background()
	s := offlineServer(t)
	peer := func(name, addr string, asn uint32) Peer {
		return Peer{Name: name, Address: netip.MustParseAddr(addr), ASN: asn, LocalASN: 65000}
	}
	a, b := peer("a", "198.18.0.1", 65001), peer("b", "198.18.0.2", 65002)
	badB := b
	badB.ASN, badB.EBGPMultihopTTL = 65000, 2 // multihop on iBGP: the schema lets it through
	steps := []struct {
		name    string
		peers   []Peer
		wantErr []string // names of the failed peers
		want    map[string]uint32
	}{
		{name: "both good", peers: []Peer{a, b}, want: map[string]uint32{"a": 65001, "b": 65002}},
		{name: "b turns bad: kept as it was, a changes", peers: []Peer{peer("a", "198.18.0.1", 65011), badB},
			wantErr: []string{"b"}, want: map[string]uint32{"a": 65011, "b": 65002}},
		{name: "a new bad peer is not added", peers: []Peer{a, b, peer("c", "0.0.0.0", 65003)},
			wantErr: []string{"c"}, want: map[string]uint32{"a": 65001, "b": 65002}},
		{name: "c takes a's address: a keeps it", peers: []Peer{a, b, peer("c", "198.18.0.1", 65003)},
			wantErr: []string{"c"}, want: map[string]uint32{"a": 65001, "b": 65002}},
	}
	for _, st := range steps {
		err := s.SetPeers(ctx, st.peers)
		var failed []string
		for _, pe := range PeerErrors(err) {
			failed = append(failed, pe.Peer)
		}
		if !slices.Equal(failed, st.wantErr) {
			t.Errorf("%s: SetPeers failed peers %v (%v), want %v", st.name, failed, err, st.wantErr)
		}
		got := map[string]uint32{}
		s.mu.Lock()
		for n, ss := range s.sessions {
			got[n] = ss.peer.ASN
		}
		s.mu.Unlock()
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: configured peers' ASNs (-want +got):\n%s", st.name, diff)
		}
	}
}

// TestAdvertisePerFamily checks that a bad route of one address family
// leaves that family's routes as they were and does not stop the other
// family.
func TestAdvertisePerFamily(t *testing.T) {
	ctx := context.Background()
	s := offlineServer(t)
	p := Peer{Name: "r", Address: netip.MustParseAddr("2001:db8::1"), ASN: 65001, LocalASN: 65000, Families: []Family{IPv4Unicast, IPv6Unicast}}
	if err := s.SetPeers(ctx, []Peer{p}); err != nil {
		t.Fatal(err)
	}
	nh := netip.MustParseAddr("198.18.0.10")
	v4 := func(pfx string) Advertisement { return Advertisement{Prefix: netip.MustParsePrefix(pfx), NextHop: nh} }
	v6 := func(pfx string) Advertisement { return Advertisement{Prefix: netip.MustParsePrefix(pfx)} }
	routes := func() []string {
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []string
		for _, pfx := range slices.SortedFunc(maps.Keys(s.sessions["r"].routes), comparePrefix) {
			out = append(out, pfx.String())
		}
		return out
	}
	steps := []struct {
		name       string
		advs       []Advertisement
		wantFailed []Family
		want       []string
	}{
		{name: "both families", advs: []Advertisement{v4("198.51.100.1/32"), v6("2001:db8:1::1/128")},
			want: []string{"198.51.100.1/32", "2001:db8:1::1/128"}},
		{name: "a bad IPv6 route: IPv6 kept, IPv4 applied",
			advs:       []Advertisement{v4("198.51.100.2/32"), v6("2001:db8:1::2/128"), {Prefix: netip.MustParsePrefix("2001:db8:1::3/64")}},
			wantFailed: []Family{IPv6Unicast},
			want:       []string{"198.51.100.2/32", "2001:db8:1::1/128"}},
		{name: "a bad IPv4 route (no next hop over IPv6): IPv4 kept, IPv6 applied",
			advs:       []Advertisement{{Prefix: netip.MustParsePrefix("198.51.100.3/32")}, v6("2001:db8:1::2/128")},
			wantFailed: []Family{IPv4Unicast},
			want:       []string{"198.51.100.2/32", "2001:db8:1::2/128"}},
	}
	for _, st := range steps {
		err := s.Advertise(ctx, "r", st.advs)
		var failed []Family
		for _, pe := range PeerErrors(err) {
			if pe.Peer != "r" {
				t.Errorf("%s: error names peer %q", st.name, pe.Peer)
			}
			failed = append(failed, pe.Family)
		}
		if !slices.Equal(failed, st.wantFailed) {
			t.Errorf("%s: failed families %v (%v), want %v", st.name, failed, err, st.wantFailed)
		}
		if diff := cmp.Diff(st.want, routes()); diff != "" {
			t.Errorf("%s: announced routes (-want +got):\n%s", st.name, diff)
		}
	}
}

// TestPeerPrefixLimit checks that a peer's own prefix limit is the one its
// GoBGP neighbor gets, and that without one the server's applies.
func TestPeerPrefixLimit(t *testing.T) {
	ctx := context.Background()
	s := offlineServer(t)
	p := Peer{Name: "r", Address: netip.MustParseAddr("198.18.0.1"), ASN: 65001, LocalASN: 65000, MaxReceivedPrefixes: 100}
	limit := func() uint32 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return apiPeer(s.sessions["r"].peer, s.sessions["r"].maxReceived).AfiSafis[0].PrefixLimits.MaxPrefixes
	}
	for _, step := range []struct {
		limit, want uint32
	}{{100, 100}, {0, DefaultMaxReceivedPrefixes}, {5000, 5000}} {
		p.MaxReceivedPrefixes = step.limit
		if err := s.SetPeers(ctx, []Peer{p}); err != nil {
			t.Fatal(err)
		}
		if got := limit(); got != step.want {
			t.Errorf("peer limit %d: neighbor's limit %d, want %d", step.limit, got, step.want)
		}
	}
	p.MaxReceivedPrefixes = 2000000
	if err := s.SetPeers(ctx, []Peer{p}); !IsInvalid(err) {
		t.Errorf("a limit of 2,000,000: error %v, want an invalid peer", err)
	}
}
