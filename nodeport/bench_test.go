package nodeport

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Run the benchmark with
//
//	go test -run '^$' -bench Forwarding10k -benchtime=1x ./nodeport/
//
// as root (it skips otherwise). It prints one "FORWARDING:" line with the
// figures docs/benchmarks.md records.

// manyRules returns n distinct IPv4 rules, one per Service: 250 addresses of
// 198.51.100.0/24 with consecutive ports each.
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

// BenchmarkForwarding10k programs 10,000 Services (one rule each) into an
// empty table in a network namespace (cold start), then adds or removes one
// Service 100 times, alternately (each one change: a new address, so a node
// element and a port element), then runs Check. It reports the cold start,
// the p50 and p99 of one change, Check, and the test process's RSS.
func BenchmarkForwarding10k(b *testing.B) {
	requirePrivileges(b)
	nft, err := NewNFT(NFTOptions{Netns: nsPath(newNetns(b, "b"))})
	if err != nil {
		b.Fatalf("NewNFT: %v", err)
	}
	f, ctx := New(nft), context.Background()
	rules := manyRules(10000)
	var colds, adds, removes, checks []time.Duration
	for b.Loop() {
		if err := f.Cleanup(ctx); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := f.Sync(ctx, rules); err != nil {
			b.Fatal(err)
		}
		colds = append(colds, time.Since(start))
		for i := range 100 {
			want, took := rules, &removes
			if i%2 == 0 {
				extra := Rule{Address: netip.MustParseAddr("198.51.100.251"), Protocol: TCP,
					Port: uint16(1000 + i/2), NodeIP: nodeIP4, NodePort: uint16(31000 + i/2)}
				want, took = append(slices.Clip(rules), extra), &adds
			}
			start := time.Now()
			if err := f.Sync(ctx, want); err != nil {
				b.Fatal(err)
			}
			*took = append(*took, time.Since(start))
		}
		start = time.Now()
		if drifted, err := f.Check(ctx); err != nil || drifted {
			b.Fatalf("Check = %v, %v", drifted, err)
		}
		checks = append(checks, time.Since(start))
	}
	changes := append(slices.Clone(adds), removes...)
	cold, check := percentile(colds, 50), percentile(checks, 50)
	p50, p99 := percentile(changes, 50), percentile(changes, 99)
	rss, hwm := procStatusMiB(b, "VmRSS"), procStatusMiB(b, "VmHWM")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(cold), "cold-start-ms")
	b.ReportMetric(ms(p50), "change-p50-ms")
	b.ReportMetric(ms(p99), "change-p99-ms")
	b.ReportMetric(ms(percentile(adds, 99)), "add-p99-ms")
	b.ReportMetric(ms(percentile(removes, 99)), "remove-p99-ms")
	b.ReportMetric(ms(check), "check-ms")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(hwm, "peak-rss-MiB")
	fmt.Printf("FORWARDING: 10,000 Services: cold start %v; one change over %d: p50 %v, p99 %v, max %v (add p50 %v p99 %v, remove p50 %v p99 %v); Check %v; RSS %.1f MiB, peak %.1f MiB\n",
		cold.Round(time.Millisecond), len(changes), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), slices.Max(changes).Round(10*time.Microsecond),
		percentile(adds, 50).Round(10*time.Microsecond), percentile(adds, 99).Round(10*time.Microsecond),
		percentile(removes, 50).Round(10*time.Microsecond), percentile(removes, 99).Round(10*time.Microsecond),
		check.Round(time.Millisecond), rss, hwm)
}

// percentile returns the p-th percentile of d (nearest rank; p=99 of 100
// samples is the 99th smallest).
func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

// procStatusMiB returns a memory field (VmRSS, VmHWM) of /proc/self/status.
func procStatusMiB(b *testing.B, field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		if err != nil {
			b.Fatalf("%s: %v", field, err)
		}
		return kib / 1024
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// nopElements is an NFT whose element batches do nothing, to measure the Go
// side of a change alone.
type nopElements struct{ NFT }

func (nopElements) Run(context.Context, *Transaction) error { return nil }

// BenchmarkSyncCPU10k measures the Go side of one change at 10,000 rules
// (validation and diff, no kernel): the part of a change that grows with
// the number of Services. It needs no privileges.
func BenchmarkSyncCPU10k(b *testing.B) {
	rules := manyRules(10000)
	f := New(nopElements{})
	desired, nodes, err := validate(rules)
	if err != nil {
		b.Fatal(err)
	}
	f.applied, f.appliedNodes, f.state = desired, nodes, stateSynced
	extra := Rule{Address: netip.MustParseAddr("198.51.100.251"), Protocol: TCP, Port: 1000, NodeIP: nodeIP4, NodePort: 31000}
	with := append(slices.Clip(rules), extra)
	i := 0
	for b.Loop() {
		want := rules
		if i%2 == 0 {
			want = with
		}
		i++
		if err := f.Sync(context.Background(), want); err != nil {
			b.Fatal(err)
		}
	}
}
