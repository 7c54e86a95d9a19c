package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/testwait"
)

const (
	localASN  = 65000
	routerASN = 65001
)

// newServer starts a Server in the root namespace, the lab bridge's side,
// and stops it in cleanup.
func newServer(tb testing.TB, lab *netlab.Lab) *Server {
	tb.Helper()
	ctx := logr.NewContext(context.Background(), testr.NewWithOptions(tb.(*testing.T), testr.Options{Verbosity: 1}))
	s, err := New(ctx, Config{RouterID: lab.Gateway4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

// peerStatus returns the Status entry of the named peer.
func peerStatus(tb testing.TB, s *Server, name string) PeerStatus {
	tb.Helper()
	sts, err := s.Status(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, st := range sts {
		if st.Name == name {
			return st
		}
	}
	tb.Fatalf("no status for peer %q in %+v", name, sts)
	return PeerStatus{}
}

func waitEstablished(tb testing.TB, s *Server, name string) {
	tb.Helper()
	testwait.Eventually(tb, 20*time.Second, func() error {
		if st := peerStatus(tb, s, name); st.State != StateEstablished {
			return fmt.Errorf("peer %s: %+v", name, st)
		}
		return nil
	})
}

func mustAdvertise(tb testing.TB, s *Server, peer string, advs ...Advertisement) {
	tb.Helper()
	if err := s.Advertise(context.Background(), peer, advs); err != nil {
		tb.Fatal(err)
	}
}

// TestFRR runs one eBGP router with an IPv4 and an IPv6 session.
func TestFRR(t *testing.T) {
	frr.Require(t)
	lab := netlab.New(t)
	r := frr.Start(t, lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{
		{Addr: lab.Gateway4, ASN: localASN}, {Addr: lab.Gateway6, ASN: localASN}}})
	s := newServer(t, lab)
	ctx := context.Background()
	v4 := Peer{Name: "v4", Address: r.Host.IPv4, ASN: routerASN, LocalASN: localASN, HoldTime: 9 * time.Second}
	v6 := Peer{Name: "v6", Address: r.Host.IPv6, ASN: routerASN, LocalASN: localASN, HoldTime: 9 * time.Second}
	if err := s.SetPeers(ctx, []Peer{v4, v6}); err != nil {
		t.Fatal(err)
	}
	p32 := netip.MustParsePrefix("198.51.100.10/32")
	p128 := netip.MustParsePrefix("2001:db8:100::10/128")
	lc, _ := ParseLargeCommunity("65000:1:2")
	a32 := Advertisement{Prefix: p32, Communities: []uint32{65000<<16 | 100, CommunityNoExport}, LargeCommunities: []LargeCommunity{lc}}
	mustAdvertise(t, s, "v4", a32)
	mustAdvertise(t, s, "v6", Advertisement{Prefix: p128})
	waitEstablished(t, s, "v4")
	waitEstablished(t, s, "v6")

	t.Run("routes arrive with next hop and communities", func(t *testing.T) {
		testwait.Eventually(t, 5*time.Second, func() error {
			p := r.Path(t, p32)
			switch {
			case p == nil:
				return errors.New("no route for " + p32.String())
			case len(p.Nexthops) == 0 || p.Nexthops[0].IP != lab.Gateway4.String():
				return fmt.Errorf("next hop %+v, want %s", p.Nexthops, lab.Gateway4)
			case p.Community == nil || p.Community.String != "65000:100 no-export":
				return fmt.Errorf("communities %+v", p.Community)
			case p.LargeCommunity == nil || p.LargeCommunity.String != "65000:1:2":
				return fmt.Errorf("large communities %+v", p.LargeCommunity)
			}
			return nil
		})
		testwait.Eventually(t, 5*time.Second, func() error {
			p := r.Path(t, p128)
			if p == nil || len(p.Nexthops) == 0 || p.Nexthops[0].IP != lab.Gateway6.String() {
				return fmt.Errorf("route for %s: %+v, want next hop %s", p128, p, lab.Gateway6)
			}
			return nil
		})
		testwait.Eventually(t, 5*time.Second, func() error {
			for _, pfx := range []netip.Prefix{p32, p128} {
				if len(frr.KernelNextHops(t, r.Host, pfx)) == 0 {
					return fmt.Errorf("no kernel route for %s", pfx)
				}
			}
			return nil
		})
		t.Logf("kernel: %s / %s", frr.KernelNextHops(t, r.Host, p32), frr.KernelNextHops(t, r.Host, p128))
	})

	t.Run("adding and withdrawing keep the session", func(t *testing.T) {
		_, before := r.NeighborState(t, lab.Gateway4)
		up := peerStatus(t, s, "v4").Uptime
		p2 := netip.MustParsePrefix("198.51.100.11/32")
		mustAdvertise(t, s, "v4", a32, Advertisement{Prefix: p2})
		testwait.Eventually(t, 5*time.Second, func() error {
			if r.Path(t, p2) == nil {
				return errors.New("added route not there")
			}
			return nil
		})
		start := time.Now()
		mustAdvertise(t, s, "v4", Advertisement{Prefix: p2})
		testwait.Eventually(t, time.Second, func() error {
			if r.Path(t, p32) != nil {
				return errors.New("withdrawn route still there")
			}
			return nil
		})
		t.Logf("withdrawal seen by FRR after %v", time.Since(start))
		state, after := r.NeighborState(t, lab.Gateway4)
		st := peerStatus(t, s, "v4")
		if state != "Established" || after != before || st.Uptime < up || st.Flaps != 0 {
			t.Errorf("session reset: FRR %s, established %d -> %d; Status %+v (uptime before %v)", state, before, after, st, up)
		}
		if st.PrefixesSent != 1 || st.UpdatesSent == 0 {
			t.Errorf("Status %+v: want 1 prefix sent and some updates", st)
		}
	})

	t.Run("changing one peer does not reset the other", func(t *testing.T) {
		_, v4Before := r.NeighborState(t, lab.Gateway4)
		_, v6Before := r.NeighborState(t, lab.Gateway6)
		v6.HoldTime = 12 * time.Second
		if err := s.SetPeers(ctx, []Peer{v4, v6}); err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, 20*time.Second, func() error {
			if _, n := r.NeighborState(t, lab.Gateway6); n != v6Before+1 {
				return fmt.Errorf("v6 established %d times, want %d", n, v6Before+1)
			}
			return nil
		})
		waitEstablished(t, s, "v6")
		if _, n := r.NeighborState(t, lab.Gateway4); n != v4Before {
			t.Errorf("v4 session reset: established %d -> %d", v4Before, n)
		}
		testwait.Eventually(t, 5*time.Second, func() error {
			if r.Path(t, p128) == nil {
				return errors.New("v6 route not re-announced after reset")
			}
			return nil
		})
	})

	t.Run("stop without graceful restart withdraws", func(t *testing.T) {
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, 2*time.Second, func() error {
			if p := r.Path(t, p128); p != nil {
				return fmt.Errorf("route still there after Stop: %+v", p)
			}
			return nil
		})
	})
}

// TestFRRLocalPref checks that LOCAL_PREF arrives over iBGP.
func TestFRRLocalPref(t *testing.T) {
	frr.Require(t)
	lab := netlab.New(t)
	r := frr.Start(t, lab, "r1", frr.Config{ASN: localASN, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN}}})
	s := newServer(t, lab)
	if err := s.SetPeers(context.Background(), []Peer{{Name: "ibgp", Address: r.Host.IPv4, ASN: localASN, LocalASN: localASN}}); err != nil {
		t.Fatal(err)
	}
	pfx := netip.MustParsePrefix("198.51.100.20/32")
	mustAdvertise(t, s, "ibgp", Advertisement{Prefix: pfx, LocalPref: ptr[uint32](250)})
	testwait.Eventually(t, 20*time.Second, func() error {
		p := r.Path(t, pfx)
		if p == nil || p.LocPrf == nil || *p.LocPrf != 250 || len(p.Nexthops) == 0 || p.Nexthops[0].IP != lab.Gateway4.String() {
			return fmt.Errorf("route %+v, want local pref 250 via %s", p, lab.Gateway4)
		}
		return nil
	})
}

// TestFRRPassword checks TCP MD5: a wrong password keeps the session down
// with a useful LastError, the right one (a changed peer) brings it up.
func TestFRRPassword(t *testing.T) {
	frr.Require(t)
	lab := netlab.New(t)
	r := frr.Start(t, lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN, Password: "right-pw"}}})
	s := newServer(t, lab)
	ctx := context.Background()
	p := Peer{Name: "md5", Address: r.Host.IPv4, ASN: routerASN, LocalASN: localASN, Password: "wrong-pw"}
	if err := s.SetPeers(ctx, []Peer{p}); err != nil {
		t.Fatal(err)
	}
	mustAdvertise(t, s, "md5")
	testwait.Eventually(t, 30*time.Second, func() error {
		if st := peerStatus(t, s, "md5"); st.LastError == "" {
			return fmt.Errorf("no LastError yet: %+v", st)
		}
		return nil
	})
	st := peerStatus(t, s, "md5")
	if st.State == StateEstablished {
		t.Fatalf("established with the wrong password: %+v", st)
	}
	t.Logf("wrong password: state %s, LastError %q", st.State, st.LastError)
	p.Password = "right-pw"
	if err := s.SetPeers(ctx, []Peer{p}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "md5")
}
