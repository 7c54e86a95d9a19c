package nodeport

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// manyRules returns n distinct IPv4 rules: 250 addresses of 198.51.100.0/24
// with consecutive ports each.
func manyRules(n int) []Rule {
	rules := make([]Rule, 0, n)
	for i := range n {
		rules = append(rules, Rule{
			Address:  netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%250)}),
			Protocol: TCP, Port: uint16(1 + i/250),
			NodeIP: nodeIP4, NodePort: uint16(30000 + i%2768),
		})
	}
	return rules
}

func newBenchForwarder(b *testing.B) (*Forwarder, context.Context) {
	requirePrivileges(b)
	nft, err := NewNFT(NFTOptions{Netns: nsPath(newNetns(b, "b"))})
	if err != nil {
		b.Fatalf("NewNFT: %v", err)
	}
	return New(nft), context.Background()
}

// BenchmarkColdStart measures writing 10,000 rules into an empty namespace.
func BenchmarkColdStart(b *testing.B) {
	f, ctx := newBenchForwarder(b)
	rules := manyRules(10000)
	for b.Loop() {
		b.StopTimer()
		if err := f.Cleanup(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := f.Sync(ctx, rules); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOneChange measures adding or removing one rule while 10,000 are
// programmed, and Check over 10,000 rules, reporting percentiles over 100
// changes per iteration.
func BenchmarkOneChange(b *testing.B) {
	f, ctx := newBenchForwarder(b)
	rules := manyRules(10000)
	if err := f.Sync(ctx, rules); err != nil {
		b.Fatal(err)
	}
	extra := Rule{Address: netip.MustParseAddr("198.51.100.251"), Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30053}
	with := append(slices.Clip(rules), extra)
	var adds, removes, checks []time.Duration
	for b.Loop() {
		for i := range 100 {
			want, took := rules, &removes
			if i%2 == 0 {
				want, took = with, &adds
			}
			start := time.Now()
			if err := f.Sync(ctx, want); err != nil {
				b.Fatal(err)
			}
			*took = append(*took, time.Since(start))
		}
		start := time.Now()
		if drifted, err := f.Check(ctx); err != nil || drifted {
			b.Fatalf("Check = %v, %v", drifted, err)
		}
		checks = append(checks, time.Since(start))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"add", adds}, {"remove", removes}, {"check", checks}} {
		slices.Sort(m.d)
		p50, p99 := m.d[len(m.d)/2], m.d[len(m.d)*99/100]
		b.ReportMetric(ms(p50), "p50-ms/"+m.name)
		if m.name != "check" {
			b.ReportMetric(ms(p99), "p99-ms/"+m.name)
		}
		b.Logf("10,000 rules: %s p50 %v p99 %v over %d", m.name, p50, p99, len(m.d))
	}
}
