package bgp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
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
// 50, and checks that the speaker takes none of them into its RIB, that
// the flood's Adj-RIB-In and the process's heap stay bounded (the prefix
// limit closes that session, and GoBGP keeps it down), and that our own
// route reaches both routers (the flooding one before it is cut off), the
// well-behaved one without a single flap.
func TestFRRImportNothing(t *testing.T) {
	frr.Require(t)
	const floodSize = 100_000
	lab := netlab.New(t)
	flood := floodPrefixes(floodSize)
	nb := []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN}}
	start := time.Now()
	r1 := frr.Start(t, lab, "r1", frr.Config{ASN: routerASN, Neighbors: nb, Networks: flood})
	r2 := frr.Start(t, lab, "r2", frr.Config{ASN: routerASN, Neighbors: nb, Networks: flood[:50]})
	eventually(t, 120*time.Second, func() error {
		if n := frrTableVersion(t, r1); n < floodSize {
			return fmt.Errorf("r1 originates %d prefixes, want %d", n, floodSize)
		}
		return nil
	})
	t.Logf("r1 originates %d prefixes after %v", floodSize, time.Since(start).Truncate(time.Millisecond))

	heap0 := heapInUse()
	s := newServer(t, lab)
	ctx := context.Background()
	peers := []Peer{
		{Name: "flood", Address: r1.Host.IPv4, ASN: routerASN, LocalASN: localASN},
		{Name: "few", Address: r2.Host.IPv4, ASN: routerASN, LocalASN: localASN},
	}
	if err := s.SetPeers(ctx, peers); err != nil {
		t.Fatal(err)
	}
	own := netip.MustParsePrefix("198.51.100.30/32")
	mustAdvertise(t, s, "flood", Advertisement{Prefix: own})
	mustAdvertise(t, s, "few", Advertisement{Prefix: own})
	waitEstablished(t, s, "few")

	// Watch for 10s: r1 sends its table at once.
	var maxAdjIn, maxHeap uint64
	seenAtR1 := false
	for i := 0; i < 100; i++ {
		for _, p := range peers {
			global, adjIn := ribSizes(t, s, p.Name)
			if global != 1 {
				t.Fatalf("%s: the speaker's RIB holds %d IPv4 destinations, want only its own route", p.Name, global)
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
	t.Logf("flood of %d routes: Adj-RIB-In peaked at %d, heap in use grew %.1f MiB at most; flood session: %+v",
		floodSize, maxAdjIn, grew, peerStatus(t, s, "flood"))
	// GoBGP checks the limit after each UPDATE, but handles the UPDATEs
	// already read from the socket before the Cease takes effect: the
	// table overshoots for a moment (6,472 routes in one run), then is
	// dropped with the session.
	if maxAdjIn > floodSize/10 {
		t.Errorf("Adj-RIB-In of the flooding neighbor reached %d, want at most %d", maxAdjIn, floodSize/10)
	}
	if _, adjIn := ribSizes(t, s, "flood"); adjIn != 0 {
		t.Errorf("Adj-RIB-In of the flooding neighbor still holds %d routes", adjIn)
	}
	if grew > 32 {
		t.Errorf("heap in use grew %.1f MiB while a router sent %d routes", grew, floodSize)
	}
	// GoBGP keeps a session closed for the prefix limit down (until the
	// peer is reset): it must say why.
	if st := peerStatus(t, s, "flood"); st.State == StateEstablished || !strings.Contains(st.LastError, "prefix limit") {
		t.Errorf("flood session %+v: want it down, its LastError naming the prefix limit", st)
	}
	if !seenAtR1 {
		t.Error("our route never reached the flooding router")
	}

	st := peerStatus(t, s, "few")
	if st.State != StateEstablished || st.Flaps != 0 {
		t.Errorf("well-behaved router's session: %+v, want established without a flap", st)
	}
	// FRR sends our own route back too (we drop it for the AS loop).
	if _, adjIn := ribSizes(t, s, "few"); adjIn != 51 {
		t.Errorf("Adj-RIB-In of the well-behaved router holds %d, want its 50 routes and ours (received, not imported)", adjIn)
	}
	eventually(t, 5*time.Second, func() error {
		if r2.Path(t, own) == nil {
			return errors.New("our route is not at the well-behaved router")
		}
		return nil
	})
}
