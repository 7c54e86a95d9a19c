package speaker

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/bgp"
)

func TestResolveInterfaces(t *testing.T) {
	addr := netip.MustParseAddr
	byAddr := bgp.Peer{Name: "r1", Address: addr("198.18.1.1")}
	up := bgp.Peer{Name: "up", Interface: "eth1"}
	resolved := func(a string) bgp.Peer { p := up; p.Address = addr(a); return p }
	onEth2 := bgp.Peer{Name: "up", Interface: "eth2", Address: addr("fe80::1%eth2")}
	table := func(m map[string]string) linkLocalResolver {
		return func(ifname string) (netip.Addr, error) {
			if a, ok := m[ifname]; ok {
				return addr(a), nil
			}
			return netip.Addr{}, errors.New("interface " + ifname + " has no IPv6 link-local neighbor yet")
		}
	}
	tests := []struct {
		name      string
		peers     []bgp.Peer
		applied   map[string]bgp.Peer
		neighbors map[string]string
		want      []bgp.Peer
		wantWhy   map[string]string
	}{{
		name:      "an address peer passes unchanged; an interface peer gets its neighbor",
		peers:     []bgp.Peer{byAddr, up},
		neighbors: map[string]string{"eth1": "fe80::1%eth1"},
		want:      []bgp.Peer{byAddr, resolved("fe80::1%eth1")},
		wantWhy:   map[string]string{},
	}, {
		name:    "no neighbor yet: no session",
		peers:   []bgp.Peer{byAddr, up},
		want:    []bgp.Peer{byAddr},
		wantWhy: map[string]string{"up": "interface eth1 has no IPv6 link-local neighbor yet"},
	}, {
		name:    "neighbor gone: the session keeps the one found before",
		peers:   []bgp.Peer{up},
		applied: map[string]bgp.Peer{"up": resolved("fe80::1%eth1")},
		want:    []bgp.Peer{resolved("fe80::1%eth1")},
		wantWhy: map[string]string{"up": "interface eth1 has no IPv6 link-local neighbor yet; the session stays with fe80::1%eth1, found before"},
	}, {
		name:    "moved to an interface without neighbor: no session",
		peers:   []bgp.Peer{up},
		applied: map[string]bgp.Peer{"up": onEth2},
		want:    []bgp.Peer{},
		wantWhy: map[string]string{"up": "interface eth1 has no IPv6 link-local neighbor yet"},
	}, {
		name:      "a new neighbor (the router was replaced) is the peer's new address",
		peers:     []bgp.Peer{up},
		applied:   map[string]bgp.Peer{"up": resolved("fe80::1%eth1")},
		neighbors: map[string]string{"eth1": "fe80::2%eth1"},
		want:      []bgp.Peer{resolved("fe80::2%eth1")},
		wantWhy:   map[string]string{},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := resolveInterfaces(tc.peers, tc.applied, table(tc.neighbors))
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWhy, why); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNeighborPolling checks the polling of interface peers' neighbors:
// the back-off while one is not found, the node's Router Advertisements
// on each interface, and a sync when an applied peer's neighbor changed.
func TestNeighborPolling(t *testing.T) {
	ctx := t.Context()
	s := &Speaker{queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	defer func() { s.queue.ShutDown() }()
	missing := map[string]string{"up": "no neighbor"}
	var got []time.Duration
	for range 8 {
		s.retryNeighbors(ctx, missing)
		got = append(got, s.neighborRetry)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("back-off (-want +got):\n%s", diff)
	}
	if s.retryNeighbors(ctx, nil); s.neighborRetry != 0 {
		t.Errorf("back-off after every neighbor was found: %v, want reset", s.neighborRetry)
	}

	// A fresh queue: the back-off's delayed syncs must not count below.
	s.queue.ShutDown()
	s.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	neighbor := netip.MustParseAddr("fe80::1%eth1")
	s.linkLocal = func(string) (netip.Addr, error) { return neighbor, nil }
	s.applied = map[string]bgp.Peer{
		"r1": {Name: "r1", Address: netip.MustParseAddr("198.18.1.1")},
		"up": {Name: "up", Interface: "eth1", Address: neighbor},
	}
	var announced []string
	s.announceLinkLocal = func(ifname string) error { announced = append(announced, ifname); return nil }
	s.lastPlan = &Plan{Peers: []bgp.Peer{{Name: "r1"}, {Name: "up", Interface: "eth1"}, {Name: "up2", Interface: "eth1"}, {Name: "new", Interface: "eth2"}}}
	s.checkNeighbors(ctx)
	if want := []string{"eth1", "eth2"}; !cmp.Equal(announced, want) {
		t.Errorf("Router Advertisements on %v, want one on each interface peer's interface %v", announced, want)
	}
	if n := s.queue.Len(); n != 0 {
		t.Errorf("same neighbor: %d syncs queued, want none", n)
	}
	neighbor = netip.MustParseAddr("fe80::2%eth1")
	s.checkNeighbors(ctx)
	if n := s.queue.Len(); n != 1 {
		t.Errorf("new neighbor: %d syncs queued, want one", n)
	}
}
