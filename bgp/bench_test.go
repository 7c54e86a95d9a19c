package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/testwait"
)

// BenchmarkFRR10k announces 10,000 /32s to one FRR router and measures the
// time until all are in the router's kernel table, and the growth of this
// process's RSS. Targets: under 10s, under 150 MiB.
//
//	go test ./bgp/ -run '^$' -bench FRR10k -benchtime 1x
func BenchmarkFRR10k(b *testing.B) {
	frr.Require(b)
	const n = 10000
	advs := make([]Advertisement, 0, n)
	// 198.51.100.0/24 holds only 256, so the routes come from 198.19.0.0/16,
	// the benchmarking range's half that netlab never uses for links.
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		advs = append(advs, Advertisement{Prefix: netip.PrefixFrom(a, 32)})
	}
	for range b.N {
		lab := netlab.New(b)
		r := frr.Start(b, lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN}}})
		rss0 := rss(b)
		s, err := New(context.Background(), Config{RouterID: lab.Gateway4})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetPeers(context.Background(), []Peer{{Name: "r1", Address: r.Host.IPv4, ASN: routerASN, LocalASN: localASN}}); err != nil {
			b.Fatal(err)
		}
		mustAdvertise(b, s, "r1") // open the session first: measure updates, not the initial table
		waitEstablished(b, s, "r1")
		start := time.Now()
		mustAdvertise(b, s, "r1", advs...)
		took := time.Since(start)
		testwait.Eventually(b, 60*time.Second, func() error {
			if got := kernelBGPRoutes(b, r.Host); got < n {
				return fmt.Errorf("%d of %d routes in the kernel", got, n)
			}
			return nil
		})
		total := time.Since(start)
		grew := float64(rss(b)-rss0) / (1 << 20)
		b.ReportMetric(total.Seconds(), "s-to-kernel")
		b.ReportMetric(took.Seconds(), "s-advertise-call")
		b.ReportMetric(grew, "MiB-rss-delta")
		b.Logf("%d routes: Advertise returned after %v, all in the router's kernel after %v; RSS grew %.1f MiB", n, took, total, grew)
		_ = s.Stop(context.Background())
	}
}

// kernelBGPRoutes counts h's IPv4 kernel routes installed by BGP.
func kernelBGPRoutes(tb testing.TB, h *netlab.Host) int {
	tb.Helper()
	out, err := exec.Command("ip", "-4", "-n", h.Netns, "route", "show", "proto", "bgp").Output()
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Count(string(out), "\n")
}

// rss returns this process's resident set size in bytes.
func rss(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}
