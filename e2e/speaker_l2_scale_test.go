package e2e

import (
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// nftCounter matches an nft counter's packets and bytes.
var nftCounter = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

// TestSpeakerL2TenNodes runs ten real speakers in network namespaces and
// measures what the membership costs each node on the wire (every UDP
// packet to port 7946: heartbeats, and memberlist's probes and gossip),
// then kills an owner and measures the failover, checking that no address
// is ever answered by two MACs at once.
func TestSpeakerL2TenNodes(t *testing.T) {
	const n = 10
	l := newL2Lab(t, n)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "ten", nil)
	var names []string
	for _, nd := range l.nodes {
		l.startL2Speaker(t, t, nd)
		names = append(names, nd.name)
	}
	t.Logf("ten speakers see each other after %v", l.waitMembers(t, n))
	for _, nd := range l.nodes {
		l.nft(t, nd, "add table inet berthcount { chain out { type filter hook output priority 0; udp dport 7946 counter; }; }")
	}
	const window = 10 * time.Second
	time.Sleep(window)
	var packets, bytes int
	for _, nd := range l.nodes {
		out, err := nd.host.Exec(t.Context(), "nft", "list table inet berthcount")
		if err != nil {
			t.Fatal(err)
		}
		m := nftCounter.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no counter in %q", nd.name, out)
		}
		p, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		packets, bytes = packets+p, bytes+b
	}
	pps := float64(packets) / n / window.Seconds()
	bps := float64(bytes) / n / window.Seconds()
	t.Logf("MEASURED: %d real speakers: %.0f membership UDP packets/s and %.0f bytes/s (IP) sent per node", n, pps, bps)
	// Heartbeats alone: 10 a second to each of the 9 others; memberlist's
	// probes and gossip add a few dozen.
	if pps < 90 || pps > 200 {
		t.Errorf("%.0f packets/s per node, want 90-200", pps)
	}

	v4s, _ := l.dualStack(t, "ten", "s", 6)
	probe := l.startARPProbe(t, probeEvery, v4s...)
	t.Cleanup(probe.stop)
	for _, a := range v4s {
		probe.waitMAC(t, a, time.Now(), "", hostMAC(t, l.byName(l2.Owner(a, names)).host), settle)
	}
	a := v4s[0]
	victim := l.byName(l2.Owner(a, names))
	var rest []string
	for _, nm := range names {
		if nm != victim.name {
			rest = append(rest, nm)
		}
	}
	heir := l.byName(l2.Owner(a, rest))
	victim.speaker.stop(syscall.SIGKILL)
	at := time.Now()
	d := probe.waitMAC(t, a, at, "", hostMAC(t, heir.host), failL2After)
	t.Logf("MEASURED: %d real speakers, owner's speaker killed: %s answered by %s after %v", n, a, heir.name, d)
	time.Sleep(time.Second)
	for _, b := range v4s {
		if o, spans := probe.overlap(b, at); o > 0 {
			t.Errorf("%s answered by two MACs at once for %v: %v", b, o, l.spans(spans))
		}
	}
}
