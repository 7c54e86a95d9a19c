package l2

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkHeartbeatCost prints what the heartbeats cost each node, in
// packets and payload bytes per second (memberlist's encryption adds about
// 30 bytes to each packet, UDP and IP 28 more), at 10 to 1,000 nodes with
// 20-character node names. At 10 and 30 nodes it runs the fake-clock
// simulator for a simulated second and counts what was sent; beyond, the
// simulator is too slow (100 nodes took 250 s, and gave the same figures),
// so the figure is the steady-state heartbeat as encoded, sent to every
// other node every HeartbeatInterval, which is what the simulator measures.
func BenchmarkHeartbeatCost(b *testing.B) {
	name := func(i int) string { return fmt.Sprintf("worker-%013d", i) }
	for _, n := range []int{10, 30, 100, 250, 1000} {
		b.Run(fmt.Sprintf("%d nodes", n), func(b *testing.B) {
			var pps, bps float64
			var how string
			for range b.N {
				if n <= 30 {
					names := make([]string, n)
					for i := range names {
						names[i] = name(i)
					}
					s := newSim(nil, names...)
					s.run(time.Second)
					p0, b0 := s.packets, s.bytes
					s.run(time.Second)
					pps, bps = float64(s.packets-p0)/float64(n), float64(s.bytes-b0)/float64(n)
					how = "simulated"
					continue
				}
				hb := heartbeat{From: name(0), Epoch: 1, Seq: 1, Stamp: uint64(time.Hour), Quorate: true}
				for i := 1; i < n; i++ {
					hb.Heard = append(hb.Heard, heard{Node: name(i), Epoch: uint64(time.Now().UnixNano()), Stamp: uint64(time.Hour), Age: 50 * time.Millisecond, Quorate: true})
				}
				msgs := encodeHeartbeats(hb)
				size := 0
				for _, m := range msgs {
					size += len(m)
				}
				perSecond := float64(time.Second / HeartbeatInterval)
				pps = perSecond * float64(n-1) * float64(len(msgs))
				bps = perSecond * float64(n-1) * float64(size)
				how = "encoded"
			}
			b.ReportMetric(pps, "packets/s/node")
			b.ReportMetric(bps, "bytes/s/node")
			b.Logf("MEASURED: %d nodes (%s): %.0f heartbeat packets/s and %.0f payload bytes/s sent per node; %.0f packets/s on the segment", n, how, pps, bps, pps*float64(n))
		})
		b.Run(fmt.Sprintf("%d nodes, voters", n), func(b *testing.B) {
			names := make([]string, n)
			for i := range names {
				names[i] = name(i)
			}
			for range b.N {
				voterCost(b, names)
			}
		})
	}
}

// voterCost reports what the heartbeats cost a voter and a non-voter
// with voter sets, on the simulator (with the failover of a crashed
// non-voter and voter) and from the messages as encoded in a settled
// cluster. The simulator starts every node at once from no record, as
// the speaker's defaults do (newStartedVoterSim), safety checked every
// millisecond up to 250 nodes and every 10 ms at 1,000 (the check costs
// n² a step).
func voterCost(b *testing.B, names []string) {
	n := len(names)
	every := time.Millisecond
	if n > 250 {
		every = 10 * time.Millisecond
	}
	ss, start := newStartedVoterSim(nil, names, every)
	// Real delivery jitters; summary deltas resend what it moves.
	ss.jitter = 4 * time.Millisecond
	how := fmt.Sprintf("simulated from no record: %v; then delivery jitter up to %v", start, ss.jitter)
	checked := fmt.Sprintf("checked every %v", every)
	voter, other, nvGone, vGone, violations := voterSimRun(ss)
	b.ReportMetric(other.sentP, "packets/s/non-voter")
	b.ReportMetric(voter.sentP, "packets/s/voter")
	b.Logf("MEASURED: %d nodes, %d voters (%s): non-voter %v; voter %v; crashed non-voter dropped by every quorate node after %v, crashed voter after %v; %d violations (%s)",
		n, MaxVoters, how, other, voter, nvGone, vGone, violations, checked)
	names = slices.Clone(names)
	voters := byRank(names)[:MaxVoters]
	slices.Sort(voters)
	voter, other = voterSteadyCost(names, voters)
	b.ReportMetric(other.sentP, "packets/s/non-voter(encoded)")
	b.ReportMetric(other.sentB, "bytes/s/non-voter(encoded)")
	b.ReportMetric(voter.sentP, "packets/s/voter(encoded)")
	b.ReportMetric(voter.sentB, "bytes/s/voter(encoded)")
	b.Logf("MEASURED: %d nodes, %d voters (encoded): non-voter %v; voter %v; %.0f packets/s on the segment",
		n, MaxVoters, other, voter, float64(MaxVoters)*voter.sentP+float64(n-MaxVoters)*other.sentP)
}
