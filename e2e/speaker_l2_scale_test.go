package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// nftCounter matches an nft counter's packets and bytes.
var nftCounter = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

// TestSpeakerL2TenNodes runs ten real speakers in network namespaces
// without voters (--l2-voters=false: every node votes, unnamed, and
// heartbeats every other) and measures what the membership costs each node
// on the wire (every UDP packet to port 7946: heartbeats, and memberlist's
// probes and gossip), then kills an owner and measures the failover,
// checking that no address is ever answered by two MACs at once.
func TestSpeakerL2TenNodes(t *testing.T) {
	const n = 10
	l, names := startSpeakers(t, n, "ten", "--l2-voters=false")
	var pps, bps, cpu float64
	for _, c := range l.membershipTraffic(t, 10*time.Second) {
		pps, bps, cpu = pps+c.packets/n, bps+c.bytes/n, cpu+c.cpu/n
	}
	t.Logf("MEASURED: %d real speakers: %.0f membership UDP packets/s and %.0f bytes/s (IP) sent per node; a speaker uses %.1f%% of a core (load average %s)", n, pps, bps, cpu*100, loadAverage(t))
	// Heartbeats alone: 10 a second to each of the 9 others; memberlist's
	// probes and gossip add a few dozen.
	if pps < 90 || pps > 200 {
		t.Errorf("%.0f packets/s per node, want 90-200", pps)
	}

	v4s, probe := l.answeredAddrs(t, "ten", "s", 6, names)
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

// startSpeakers starts n real speakers with the flags args in a lab with
// a layer-2 pool and the namespace ns, and returns the lab and the nodes'
// names once the speakers see each other.
func startSpeakers(t *testing.T, n int, ns string, args ...string) (*l2Lab, []string) {
	l := newL2Lab(t, n)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, ns, nil)
	var names []string
	for _, nd := range l.nodes {
		l.startL2Speaker(t, t, nd, args...)
		names = append(names, nd.name)
	}
	t.Logf("%d speakers see each other after %v", n, l.waitMembers(t, n))
	return l, names
}

// nodeCost is what the membership costs one node per second: UDP packets
// and IP bytes sent to port 7946, and the speaker's CPU (user and system,
// in cores).
type nodeCost struct{ packets, bytes, cpu float64 }

// membershipTraffic counts, on every node, the UDP packets to port 7946
// it sends (heartbeats, and memberlist's probes and gossip) for window,
// and the CPU its speaker uses, and returns each node's cost per second.
func (l *l2Lab) membershipTraffic(t *testing.T, window time.Duration) map[string]nodeCost {
	cpu := map[string]float64{}
	for _, nd := range l.nodes {
		l.nft(t, nd, "add table inet berthcount { chain out { type filter hook output priority 0; udp dport 7946 counter; }; }")
		cpu[nd.name] = procCPU(t, nd.speaker.pid)
	}
	time.Sleep(window) // a measurement window, not a wait for a condition
	out := map[string]nodeCost{}
	for _, nd := range l.nodes {
		cpu[nd.name] = (procCPU(t, nd.speaker.pid) - cpu[nd.name]) / window.Seconds()
		res, err := nd.host.Exec(t.Context(), "nft", "list table inet berthcount")
		if err != nil {
			t.Fatal(err)
		}
		l.nft(t, nd, "delete table inet berthcount")
		m := nftCounter.FindStringSubmatch(res)
		if m == nil {
			t.Fatalf("%s: no counter in %q", nd.name, res)
		}
		p, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		out[nd.name] = nodeCost{packets: float64(p) / window.Seconds(), bytes: float64(b) / window.Seconds(), cpu: cpu[nd.name]}
	}
	return out
}

// TestSpeakerL2TenNodesVoters runs ten real speakers with --l2-voters in
// network namespaces: they write a membership record naming 5 voters, and
// from then on a non-voter sends heartbeats to the voters only; each
// speaker's metrics say whether it votes. It
// measures what the membership costs a voter and a non-voter, then kills
// the owner of an address that is not a voter and one that is, and
// measures the failovers, checking that no address is ever answered by
// two MACs at once. -l2.speakers runs it with more speakers than ten.
func TestSpeakerL2TenNodesVoters(t *testing.T) {
	n := *l2Speakers
	l, names := startSpeakers(t, n, "tenv", "--l2-voters")
	var rec l2.MemberRecord
	poll(t, 30*time.Second, "a record with 5 voters", func() error {
		var err error
		if rec, err = l.membersRecord(t); err != nil {
			return err
		}
		if rec.Joint || len(rec.Voters) != l2.MaxVoters {
			return fmt.Errorf("record %+v", rec)
		}
		return nil
	})
	t.Logf("record %+v", rec)
	// Every speaker says whether it votes, and how many the record names.
	poll(t, 10*time.Second, "every speaker's voter metrics", func() error {
		for _, name := range names {
			sp := l.byName(name).speaker
			want := "0"
			if slices.Contains(rec.Voters, name) {
				want = "1"
			}
			got := [2]string{sp.metric(t, "berth_speaker_l2_voter", ""), sp.metric(t, "berth_speaker_l2_record_voters", "")}
			if got != [2]string{want, "5"} {
				return fmt.Errorf("%s: berth_speaker_l2_voter, berth_speaker_l2_record_voters = %v, want %s, 5", name, got, want)
			}
		}
		return nil
	})
	var voter, other nodeCost
	for name, c := range l.membershipTraffic(t, 10*time.Second) {
		sum, k := &other, float64(n-l2.MaxVoters)
		if slices.Contains(rec.Voters, name) {
			sum, k = &voter, l2.MaxVoters
		}
		sum.packets, sum.bytes, sum.cpu = sum.packets+c.packets/k, sum.bytes+c.bytes/k, sum.cpu+c.cpu/k
	}
	t.Logf("MEASURED: %d real speakers, %d voters: a voter sends %.0f membership UDP packets/s (%.0f bytes/s, IP) and uses %.1f%% of a core, a non-voter %.0f (%.0f bytes/s) and %.1f%% (load average %s)",
		n, l2.MaxVoters, voter.packets, voter.bytes, voter.cpu*100, other.packets, other.bytes, other.cpu*100, loadAverage(t))
	// Heartbeats alone: 10 a second to each voter (5) from a non-voter, to
	// each other node (n-1) from a voter; memberlist adds a few dozen.
	if other.packets < 50 || other.packets > 90 {
		t.Errorf("a non-voter sends %.0f packets/s, want 50-90", other.packets)
	}
	if low := float64(n-1) * 10; voter.packets < low || voter.packets > low+110 {
		t.Errorf("a voter sends %.0f packets/s, want %.0f-%.0f", voter.packets, low, low+110)
	}
	// The voters send summary deltas, which every speaker reads, and no
	// speaker rejects a heartbeat as malformed or of another version.
	for _, name := range names {
		sp := l.byName(name).speaker
		count := func(metric, labels string) float64 { return sp.number(t, metric, labels) }
		sentDelta, sentWhole := count("berth_speaker_l2_summaries_sent_total", `form="delta"`), count("berth_speaker_l2_summaries_sent_total", `form="whole"`)
		readDelta, readWhole := count("berth_speaker_l2_summaries_received_total", `form="delta"`), count("berth_speaker_l2_summaries_received_total", `form="whole"`)
		unreadable := count("berth_speaker_l2_summaries_received_total", `form="unreadable"`)
		t.Logf("MEASURED: %s (voter: %v): summaries sent %.0f as deltas, %.0f whole; received %.0f deltas, %.0f whole, %.0f unreadable",
			name, slices.Contains(rec.Voters, name), sentDelta, sentWhole, readDelta, readWhole, unreadable)
		if slices.Contains(rec.Voters, name) && sentDelta < 10*sentWhole {
			t.Errorf("%s, a voter, sent %.0f summaries as deltas and %.0f whole", name, sentDelta, sentWhole)
		}
		if readDelta < 10*readWhole {
			t.Errorf("%s received %.0f summaries as deltas and %.0f whole", name, readDelta, readWhole)
		}
		for _, reason := range []string{"malformed", "unknown_version"} {
			if v := count("berth_speaker_l2_heartbeats_rejected_total", `reason="`+reason+`"`); v != 0 {
				t.Errorf("%s rejected %.0f heartbeats: %s", name, v, reason)
			}
		}
	}

	v4s, probe := l.answeredAddrs(t, "tenv", "s", 8, names)
	at := time.Now()
	for _, voterOwner := range []bool{false, true} {
		var a netip.Addr
		for _, x := range v4s {
			if slices.Contains(rec.Voters, l2.Owner(x, names)) == voterOwner {
				a = x
				break
			}
		}
		if !a.IsValid() {
			t.Fatalf("no address owned by a node with voter %v", voterOwner)
		}
		victim := l.byName(l2.Owner(a, names))
		names = slices.DeleteFunc(names, func(s string) bool { return s == victim.name })
		heir := l.byName(l2.Owner(a, names))
		victim.speaker.stop(syscall.SIGKILL)
		killed := time.Now()
		d := probe.waitMAC(t, a, killed, "", hostMAC(t, heir.host), failL2After)
		t.Logf("MEASURED: %d real speakers with voters, owner's speaker killed (a voter: %v): %s answered by %s after %v", n, voterOwner, a, heir.name, d)
	}
	time.Sleep(time.Second) // let a late second answer show
	for _, b := range v4s {
		if o, spans := probe.overlap(b, at); o > 0 {
			t.Errorf("%s answered by two MACs at once for %v: %v", b, o, l.spans(spans))
		}
	}
}
