package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/testwait"
)

// floodPrefixes returns n distinct IPv4 prefixes inside 198.19.0.0/16
// (part of 198.18.0.0/15, which the tests may use): the /32s first, then
// the /31s, then the /30s, up to 114,688.
func floodPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for bits := 32; len(out) < n; bits-- {
		step := uint32(1) << (32 - bits)
		for a := uint32(0); a < 1<<16 && len(out) < n; a += step {
			addr := netip.AddrFrom4([4]byte{198, 19, byte(a >> 8), byte(a)})
			out = append(out, netip.PrefixFrom(addr, bits))
		}
	}
	return out
}

// frrTableVersion returns the version of r's IPv4 unicast BGP table, which
// every new prefix bumps: with only network statements, the number of
// prefixes originated so far.
func frrTableVersion(tb testing.TB, r *frr.Router) int {
	tb.Helper()
	var got struct {
		TableVersion int `json:"tableVersion"`
	}
	out := r.Vtysh(tb, "show bgp ipv4 unicast summary json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		tb.Fatalf("parse %q: %v", out, err)
	}
	return got.TableVersion
}

// ribSizes returns the number of IPv4 destinations in the named peer's
// GoBGP RIB (our own routes and whatever was imported) and in its
// neighbor's Adj-RIB-In (everything received, before policy; zero while
// the session is down).
func ribSizes(tb testing.TB, s *Server, name string) (global, adjIn uint64) {
	tb.Helper()
	s.mu.Lock()
	ss := s.sessions[name]
	s.mu.Unlock()
	ctx := context.Background()
	fam := apiFamily(IPv4Unicast)
	g, err := ss.bgp.GetTable(ctx, &api.GetTableRequest{TableType: api.TableType_GLOBAL, Family: fam})
	if err != nil {
		tb.Fatalf("global table of %s: %v", name, err)
	}
	in, err := ss.bgp.GetTable(ctx, &api.GetTableRequest{TableType: api.TableType_ADJ_IN, Family: fam, Name: ss.peer.Address.String()})
	if err != nil {
		return g.NumDestination, 0
	}
	return g.NumDestination, in.NumDestination
}

// heapInUse returns the live Go heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestFRRImportNothing has one router announce 100,000 routes and another
// 50 (and our 500 back to us), and checks that the speaker takes none of
// them into its RIB, that the flood's Adj-RIB-In and the process's heap
// stay bounded (the prefix limit closes that session, and it is re-opened
// after a back-off), and that our own route reaches both routers (the flooding one
// before it is cut off), the well-behaved one without a single flap. The
// flood runs twice: at the default limit, and at a limit of 100.
func TestFRRImportNothing(t *testing.T) {
	frr.Require(t)
	lab := netlab.New(t)
	flood := floodPrefixes(floodSize)
	nb := []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN}}
	start := time.Now()
	r1 := frr.Start(t, lab, "r1", frr.Config{ASN: routerASN, Neighbors: nb, Networks: flood})
	r2 := frr.Start(t, lab, "r2", frr.Config{ASN: routerASN, Neighbors: nb, Networks: flood[:50]})
	testwait.Eventually(t, 120*time.Second, func() error {
		if n := frrTableVersion(t, r1); n < floodSize {
			return fmt.Errorf("r1 originates %d prefixes, want %d", n, floodSize)
		}
		return nil
	})
	t.Logf("r1 originates %d prefixes after %v", floodSize, time.Since(start).Truncate(time.Millisecond))

	// GoBGP checks the limit after each UPDATE, but handles the UPDATEs
	// already read from the socket before the Cease takes effect: the
	// table overshoots the limit for a moment, then is dropped with the
	// session. How far depends on how fast GoBGP works through them: at
	// the default limit (20,000), most of a 100,000-route flood got in
	// before the cut on 2 busy cores (95,462 routes, 29.5 MiB; without
	// the change the heap grew 64 MiB and kept it); at 100, 4,045.
	for _, tc := range []struct {
		limit            uint32
		maxAdjIn         uint64
		maxHeapGrowthMiB float64
	}{
		// At the default limit the whole flood may get in before the cut,
		// plus the speaker's own route, which FRR sends back.
		{limit: 0, maxAdjIn: floodSize + 1, maxHeapGrowthMiB: 48},
		{limit: 100, maxAdjIn: floodSize / 5, maxHeapGrowthMiB: 16},
	} {
		t.Run(fmt.Sprintf("limit %d", tc.limit), func(t *testing.T) {
			adjIn, grew := floodSpeaker(t, lab, r1, r2, tc.limit)
			if adjIn > tc.maxAdjIn {
				t.Errorf("Adj-RIB-In of the flooding neighbor reached %d, want at most %d of the %d sent", adjIn, tc.maxAdjIn, floodSize)
			}
			if grew > tc.maxHeapGrowthMiB {
				t.Errorf("heap in use grew %.1f MiB while a router sent %d routes, want at most %.0f", grew, floodSize, tc.maxHeapGrowthMiB)
			}
		})
	}
}

const (
	floodSize = 100_000
	ownRoutes = 500
)

// floodSpeaker runs a Server with the given prefix limit, peering with r1,
// which sends floodSize routes, and (if the limit is the default) with r2,
// which sends 50, and checks what TestFRRImportNothing says. It returns the
// peak size of r1's Adj-RIB-In and the peak growth of the heap in use.
func floodSpeaker(t *testing.T, lab *netlab.Lab, r1, r2 *frr.Router, limit uint32) (uint64, float64) {
	heap0 := heapInUse()
	ctx := context.Background()
	// At the default limit the session stays closed while watched (the
	// default retry is a minute); at the other, it is re-opened soon.
	var retry time.Duration
	if limit != 0 {
		retry = 2 * time.Second
	}
	s, err := New(ctx, Config{RouterID: lab.Gateway4, PrefixLimitRetry: retry})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(ctx) }()
	// The limit is the peer's own (BerthBGPPeer maxReceivedPrefixes); zero
	// means the default.
	peers := []Peer{{Name: "flood", Address: r1.Host.IPv4, ASN: routerASN, LocalASN: localASN, MaxReceivedPrefixes: limit}}
	if limit == 0 {
		peers = append(peers, Peer{Name: "few", Address: r2.Host.IPv4, ASN: routerASN, LocalASN: localASN})
	}
	if err := s.SetPeers(ctx, peers); err != nil {
		t.Fatal(err)
	}
	// r2 gets 500 routes from us, and sends them back (FRR does): they
	// count against the limit, which must leave room for them.
	own := netip.MustParsePrefix("198.51.100.30/32")
	var many []Advertisement
	for a := netip.MustParseAddr("198.51.100.0"); len(many) < ownRoutes; a = a.Next() {
		many = append(many, Advertisement{Prefix: netip.PrefixFrom(a, 32)})
	}
	mustAdvertise(t, s, "flood", Advertisement{Prefix: own})
	owned := map[string]uint64{"flood": 1}
	if limit == 0 {
		mustAdvertise(t, s, "few", many...)
		waitEstablished(t, s, "few")
		owned["few"] = ownRoutes
	}

	// Watch for 10s: r1 sends its table at once.
	var maxAdjIn, maxHeap uint64
	seenAtR1 := false
	for i := 0; i < 100; i++ {
		for _, p := range peers {
			global, adjIn := ribSizes(t, s, p.Name)
			if global != owned[p.Name] {
				t.Fatalf("%s: the speaker's RIB holds %d IPv4 destinations, want only its own %d", p.Name, global, owned[p.Name])
			}
			if p.Name == "flood" {
				maxAdjIn = max(maxAdjIn, adjIn)
			}
		}
		if i%10 == 0 {
			maxHeap = max(maxHeap, heapInUse())
		}
		if !seenAtR1 && r1.Path(t, own) != nil {
			seenAtR1 = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	grew := float64(int64(maxHeap)-int64(heap0)) / (1 << 20)
	st := peerStatus(t, s, "flood")
	t.Logf("flood of %d routes, limit %d: Adj-RIB-In peaked at %d, heap in use grew %.1f MiB at most; flood session: %+v",
		floodSize, limit, maxAdjIn, grew, st)
	if _, adjIn := ribSizes(t, s, "flood"); adjIn != 0 {
		t.Errorf("Adj-RIB-In of the flooding neighbor still holds %d routes", adjIn)
	}
	// The session closed for the prefix limit must say why (Status's
	// words while closed, GoBGP's once it is being re-opened).
	why := strings.Contains(st.LastError, "prefix limit") || strings.Contains(st.LastError, "maximum number of prefixes")
	if (limit == 0 && st.State == StateEstablished) || !why {
		t.Errorf("flood session %+v: want it closed, its LastError naming the prefix limit", st)
	}
	if !seenAtR1 {
		t.Error("our route never reached the flooding router")
	}
	if limit != 0 {
		// It is re-opened after PrefixLimitRetry (then 4s, 8s...), and
		// closed again since r1 still floods.
		testwait.Eventually(t, 30*time.Second, func() error {
			if st := peerStatus(t, s, "flood"); st.Flaps < 2 {
				return fmt.Errorf("flood session not re-opened and closed again: %+v", st)
			}
			return nil
		})
		t.Logf("re-opened and closed again: %+v", peerStatus(t, s, "flood"))
		return maxAdjIn, grew
	}

	st = peerStatus(t, s, "few")
	if st.State != StateEstablished || st.Flaps != 0 {
		t.Errorf("well-behaved router's session: %+v, want established without a flap", st)
	}
	// FRR sends our own routes back too (we drop them for the AS loop).
	if _, adjIn := ribSizes(t, s, "few"); adjIn != 50+ownRoutes {
		t.Errorf("Adj-RIB-In of the well-behaved router holds %d, want its 50 routes and our %d (received, not imported)", adjIn, ownRoutes)
	}
	testwait.Eventually(t, 5*time.Second, func() error {
		for _, a := range []Advertisement{many[0], many[ownRoutes-1]} {
			if r2.Path(t, a.Prefix) == nil {
				return fmt.Errorf("our route %s is not at the well-behaved router", a.Prefix)
			}
		}
		return nil
	})
	return maxAdjIn, grew
}
