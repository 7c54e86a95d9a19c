package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/testwait"
)

// TestFRRGracefulRestart stops a Server with graceful restart and starts a
// new one: FRR must keep the route throughout, stale in between.
func TestFRRGracefulRestart(t *testing.T) {
	frr.Require(t)
	lab := netlab.New(t)
	r := frr.Start(t, lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN}}, GracefulRestart: true})
	ctx := context.Background()
	peer := Peer{Name: "gr", Address: r.Host.IPv4, ASN: routerASN, LocalASN: localASN, GracefulRestart: true, RestartTime: 60 * time.Second}
	pfx := netip.MustParsePrefix("198.51.100.30/32")
	gone := netip.MustParsePrefix("198.51.100.31/32") // not re-announced after the restart
	start := func() *Server {
		s := newServer(t, lab)
		if err := s.SetPeers(ctx, []Peer{peer}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	mustAdvertise(t, s, "gr", Advertisement{Prefix: pfx}, Advertisement{Prefix: gone})
	waitEstablished(t, s, "gr")
	testwait.Eventually(t, 5*time.Second, func() error {
		if r.Path(t, pfx) == nil || r.Path(t, gone) == nil {
			return errors.New("routes not there")
		}
		return nil
	})
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, func() error {
		p := r.Path(t, pfx)
		switch {
		case p == nil:
			t.Fatalf("route withdrawn on Stop with graceful restart")
		case !p.Stale:
			return fmt.Errorf("route not stale yet: %+v", p)
		}
		return nil
	})
	t.Logf("after Stop: route kept as stale; kernel: %s", frr.KernelNextHops(t, r.Host, pfx))

	s = start()
	mustAdvertise(t, s, "gr", Advertisement{Prefix: pfx})
	testwait.Eventually(t, 20*time.Second, func() error {
		p := r.Path(t, pfx)
		switch {
		case p == nil:
			t.Fatalf("route lost during the restart")
		case p.Stale:
			return errors.New("route still stale")
		case r.Path(t, gone) != nil:
			return errors.New("stale route that was not re-announced still there")
		}
		return nil
	})
	if len(frr.KernelNextHops(t, r.Host, pfx)) == 0 {
		t.Errorf("no kernel route for %s after the restart", pfx)
	}
}
