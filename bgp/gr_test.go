package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/netlab"
)

// TestFRRGracefulRestart stops a Server with graceful restart and starts a
// new one: FRR must keep the route throughout, stale in between.
func TestFRRGracefulRestart(t *testing.T) {
	requireFRR(t)
	lab := netlab.New(t)
	r := startRouter(t, lab, "r1", routerASN, true, neighbor{addr: lab.Gateway4, asn: localASN})
	ctx := context.Background()
	peer := Peer{Name: "gr", Address: r.host.IPv4, ASN: routerASN, LocalASN: localASN, GracefulRestart: true, RestartTime: 60 * time.Second}
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
	eventually(t, 5*time.Second, func() error {
		if r.route(t, pfx) == nil || r.route(t, gone) == nil {
			return errors.New("routes not there")
		}
		return nil
	})
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		p := r.route(t, pfx)
		switch {
		case p == nil:
			t.Fatalf("route withdrawn on Stop with graceful restart")
		case !p.Stale:
			return fmt.Errorf("route not stale yet: %+v", p)
		}
		return nil
	})
	t.Logf("after Stop: route kept as stale; kernel: %s", r.kernelRoute(t, pfx))

	s = start()
	mustAdvertise(t, s, "gr", Advertisement{Prefix: pfx})
	eventually(t, 20*time.Second, func() error {
		p := r.route(t, pfx)
		switch {
		case p == nil:
			t.Fatalf("route lost during the restart")
		case p.Stale:
			return errors.New("route still stale")
		case r.route(t, gone) != nil:
			return errors.New("stale route that was not re-announced still there")
		}
		return nil
	})
	if r.kernelRoute(t, pfx) == "" {
		t.Errorf("no kernel route for %s after the restart", pfx)
	}
}
