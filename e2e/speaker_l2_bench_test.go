package e2e

import (
	"flag"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

var l2Rounds = flag.Int("l2.rounds", 4, "BenchmarkL2Failover: rounds of one SIGKILL and one link-down of every node")

// BenchmarkL2Failover measures unplanned layer-2 failover as a client sees
// it: three speakers on a bridge answer for 12 IPv4 addresses; each round
// SIGKILLs every node's speaker in turn (restarting it after), then takes
// every node's eth0 down in turn (bringing it up after), and records for
// each address the owner held how long until the client's ARP probe (every
// 20 ms) got a reply from another node. It reports p50, p99 and max, per
// kind and overall, and fails if two MACs ever answered an address at once.
//
//	go test ./e2e/ -run '^$' -bench L2Failover -benchtime 1x -l2.rounds 4
//
// Each iteration of b.N runs -l2.rounds rounds; use -benchtime 1x.
func BenchmarkL2Failover(b *testing.B) {
	l := newL2Lab(b, 3)
	l.l2Pool(b, v1alpha1.L2AdvertisementSpec{})
	l.e.namespace(b, "bench", nil)
	for _, n := range l.nodes {
		l.startL2Speaker(b, b, n)
	}
	l.waitMembers(b, 3)
	v4s, _ := l.dualStack(b, "bench", "s", 12)
	names := []string{"node1", "node2", "node3"}
	owned := map[*labNode][]netip.Addr{}
	for _, a := range v4s {
		n := l.byName(l2.Owner(a, names))
		owned[n] = append(owned[n], a)
	}
	// Every address answered by its owner before the first measurement.
	probe := l.startARPProbe(b, probeEvery, v4s...)
	for _, n := range l.nodes {
		for _, a := range owned[n] {
			probe.waitMAC(b, a, time.Now(), "", hostMAC(b, n.host), settle)
		}
	}

	kinds := []struct {
		name     string
		down, up func(*labNode)
	}{
		{"SIGKILL", func(n *labNode) { n.speaker.stop(syscall.SIGKILL) }, func(n *labNode) { l.startL2Speaker(b, b, n) }},
		{"link-down", func(n *labNode) { l.ip(b, "-n", n.host.Netns, "link", "set", "eth0", "down") },
			func(n *labNode) { l.ip(b, "-n", n.host.Netns, "link", "set", "eth0", "up") }},
	}
	samples := map[string][]time.Duration{}
	events := map[string]int{}
	b.ResetTimer()
	for range b.N {
		for range *l2Rounds {
			for _, k := range kinds {
				for _, victim := range l.nodes {
					if len(owned[victim]) == 0 {
						continue
					}
					samples[k.name] = append(samples[k.name], l.failover(b, probe, owned[victim], victim, k.down, k.up)...)
					events[k.name]++
				}
			}
		}
	}
	b.StopTimer()
	var all []time.Duration
	for _, k := range kinds {
		ds := samples[k.name]
		all = append(all, ds...)
		reportFailover(b, k.name, events[k.name], ds)
	}
	reportFailover(b, "all", events["SIGKILL"]+events["link-down"], all)
}

// reportFailover prints and reports the percentiles of ds, in milliseconds.
func reportFailover(b *testing.B, kind string, events int, ds []time.Duration) {
	p50, p99, worst := percentile(ds, 50), percentile(ds, 99), percentile(ds, 100)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(p50), kind+"-p50-ms")
	b.ReportMetric(ms(p99), kind+"-p99-ms")
	b.ReportMetric(ms(worst), kind+"-max-ms")
	b.Logf("MEASURED: L2 failover, %s: %d events, %d addresses moved: p50 %v, p99 %v, max %v (target p50 <= 1s, p99 <= 2s)",
		kind, events, len(ds), p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond))
}
