package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/testwait"
)

// TestFRRPeerOptions checks that a BerthBGPPeer's port, sourceAddress,
// ebgpMultiHop and ttlSecurity reach the wire, against a real FRR that
// accepts the session only if they do: each case first dials without the
// option (the control: the session must stay down) and then with it (it
// must come up and the route reach the router).
func TestFRRPeerOptions(t *testing.T) {
	frr.Require(t)
	pfx := netip.MustParsePrefix("198.51.100.77/32")
	tests := []struct {
		name string
		// router returns the router's configuration and the address the
		// router expects the session from; it may set up the lab.
		router func(t *testing.T, lab *netlab.Lab) (frr.Config, netip.Addr)
		// after starts anything the router's namespace needs.
		after func(t *testing.T, lab *netlab.Lab, r *frr.Router)
		// with sets the option on the peer.
		with func(p *Peer, lab *netlab.Lab)
	}{
		{
			name: "port: the router listens on 1179 only",
			router: func(_ *testing.T, lab *netlab.Lab) (frr.Config, netip.Addr) {
				return frr.Config{ASN: routerASN, Port: 1179, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN, Passive: true}}}, lab.Gateway4
			},
			with: func(p *Peer, _ *netlab.Lab) { p.Port = 1179 },
		},
		{
			name: "sourceAddress: the router knows only a second address of ours",
			router: func(t *testing.T, lab *netlab.Lab) (frr.Config, netip.Addr) {
				src := secondAddress(t, lab)
				return frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: src, ASN: localASN, Passive: true}}}, src
			},
			with: func(p *Peer, lab *netlab.Lab) { p.SourceAddress = secondAddressOf(lab) },
		},
		{
			name: "ebgpMultiHop: the router drops our packets unless their TTL is 2",
			router: func(_ *testing.T, lab *netlab.Lab) (frr.Config, netip.Addr) {
				return frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN, Passive: true}}}, lab.Gateway4
			},
			after: func(t *testing.T, lab *netlab.Lab, r *frr.Router) { onlyTTL(t, lab, r, 2) },
			with:  func(p *Peer, _ *netlab.Lab) { p.EBGPMultihopTTL = 2 },
		},
		{
			// FRR 8.4 does not drop a passive session's packets below its
			// minimum TTL here, so the router's input checks that ours
			// come with TTL 255; FRR's ttl-security sends its own with
			// 255, which ours then require.
			name: "ttlSecurity: the router runs GTSM and drops our packets unless their TTL is 255",
			router: func(_ *testing.T, lab *netlab.Lab) (frr.Config, netip.Addr) {
				return frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN, Passive: true, TTLSecurityHops: 1}}}, lab.Gateway4
			},
			after: func(t *testing.T, lab *netlab.Lab, r *frr.Router) { onlyTTL(t, lab, r, 255) },
			with:  func(p *Peer, _ *netlab.Lab) { p.TTLSecurity = true },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t)
			cfg, from := tc.router(t, lab)
			r := frr.Start(t, lab, "r1", cfg)
			if tc.after != nil {
				tc.after(t, lab, r)
			}
			s := newServer(t, lab)
			ctx := context.Background()
			p := Peer{Name: "r1", Address: r.Host.IPv4, ASN: routerASN, LocalASN: localASN, HoldTime: 9 * time.Second}
			if err := s.SetPeers(ctx, []Peer{p}); err != nil {
				t.Fatal(err)
			}
			mustAdvertise(t, s, "r1", Advertisement{Prefix: pfx})
			// The control: several dials without the option (the
			// router's connect timer is 1 s, ours retries as fast), and
			// the session never comes up.
			for start := time.Now(); time.Since(start) < 4*time.Second; time.Sleep(100 * time.Millisecond) {
				if st := peerStatus(t, s, "r1"); st.State == StateEstablished {
					t.Fatalf("established without the option: %+v", st)
				}
			}
			tc.with(&p, lab)
			if err := s.SetPeers(ctx, []Peer{p}); err != nil {
				t.Fatal(err)
			}
			waitEstablished(t, s, "r1")
			testwait.Eventually(t, 10*time.Second, func() error {
				if state, _ := r.NeighborState(t, from); state != "Established" {
					return fmt.Errorf("the router's session with %s: %s", from, state)
				}
				if r.Path(t, pfx) == nil {
					return fmt.Errorf("no route for %s at the router", pfx)
				}
				return nil
			})
		})
	}
}

// secondAddressOf is an address of the lab's IPv4 subnet that no host gets.
func secondAddressOf(lab *netlab.Lab) netip.Addr {
	a := lab.Prefix4.Addr().As4()
	a[3] = 250
	return netip.AddrFrom4(a)
}

// secondAddress adds secondAddressOf(lab) to the lab's bridge, our side;
// it goes with the bridge.
func secondAddress(t *testing.T, lab *netlab.Lab) netip.Addr {
	t.Helper()
	a := secondAddressOf(lab)
	if out, err := exec.Command("ip", "addr", "add", netip.PrefixFrom(a, lab.Prefix4.Bits()).String(), "dev", lab.Bridge).CombinedOutput(); err != nil {
		t.Fatalf("add %s to %s: %v: %s", a, lab.Bridge, err, out)
	}
	return a
}

// onlyTTL makes the router's kernel drop every IPv4 packet from our side of
// the bridge whose TTL is not ttl: only a session whose packets leave with
// that TTL can come up.
func onlyTTL(t *testing.T, lab *netlab.Lab, r *frr.Router, ttl int) {
	t.Helper()
	for _, cmd := range []string{
		"add table inet ttlcheck",
		"add chain inet ttlcheck in { type filter hook input priority 0 ; }",
		fmt.Sprintf("add rule inet ttlcheck in ip saddr %s ip ttl != %d drop", lab.Gateway4, ttl),
	} {
		if _, err := r.Host.Exec(t.Context(), "nft", cmd); err != nil {
			t.Fatal(err)
		}
	}
}
