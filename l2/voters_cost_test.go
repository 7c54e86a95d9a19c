package l2

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// roleCost is what the heartbeats cost one node per second: packets and
// payload bytes sent and received.
type roleCost struct{ sentP, sentB, recvP, recvB float64 }

func (c roleCost) String() string {
	return fmt.Sprintf("sends %.0f packets/s (%.0f B/s), receives %.0f packets/s (%.0f B/s)", c.sentP, c.sentB, c.recvP, c.recvB)
}

// voterSteadyCost returns what the heartbeats cost a voter and a
// non-voter per second in a settled cluster of the nodes names under
// voters, every node heard within the last interval, from the messages
// outgoing encodes: the second of two heartbeats, after every node read
// the first one's summary, at the same phases (so its summaries are
// deltas without a change).
func voterSteadyCost(names, voters []string) (voter, other roleCost) {
	now := simStart.Add(time.Hour)
	perSecond := float64(time.Second / HeartbeatInterval)
	sent := func(self string) (map[string]float64, map[string]float64) {
		l := settledNode(names, voters, self, now, true)
		to := without(names, []string{self})
		l.outgoing(now, l.heartbeat(now), to)
		later := now.Add(HeartbeatInterval)
		nextRound(l, now)
		packets, bytes := map[string]float64{}, map[string]float64{}
		for _, m := range l.outgoing(later, l.heartbeat(later), to) {
			packets[m.to] += perSecond
			bytes[m.to] += perSecond * float64(len(m.b))
		}
		return packets, bytes
	}
	vp, vb := sent(voters[0])
	var nonVoter string
	for _, n := range names {
		if !slices.Contains(voters, n) {
			nonVoter = n
			break
		}
	}
	op, ob := sent(nonVoter)
	sum := func(m map[string]float64) float64 {
		s := 0.0
		for _, v := range m {
			s += v
		}
		return s
	}
	nv := float64(len(names) - len(voters))
	voter = roleCost{
		sentP: sum(vp), sentB: sum(vb),
		recvP: float64(len(voters)-1)*vp[voters[1]] + nv*op[voters[0]],
		recvB: float64(len(voters)-1)*vb[voters[1]] + nv*ob[voters[0]],
	}
	other = roleCost{sentP: sum(op), sentB: sum(ob), recvP: float64(len(voters)) * vp[nonVoter], recvB: float64(len(voters)) * vb[nonVoter]}
	return voter, other
}

// settledNode returns node self of a settled cluster of the nodes names
// under voters at now: it heard every node it hears (all as a voter, the
// voters otherwise) 50 ms ago, every node quorate and announcing the same
// known membership, and reading deltas if deltas.
func settledNode(names, voters []string, self string, now time.Time, deltas bool) *liveness {
	l := newLiveness(self, 1, simStart, defaultTiming(), true)
	l.scale = true
	for _, n := range names {
		l.join(simStart, n)
	}
	l.rec = MemberRecord{Rev: 2, Voters: voters}
	_, digest := l.membership()
	isVoter := slices.Contains(voters, self)
	for _, n := range names {
		if n == self || !isVoter && !slices.Contains(voters, n) {
			continue
		}
		p := l.peer(n)
		p.epoch, p.stamp, p.recvAt, p.quorate, p.digest, p.readsDelta = uint64(now.UnixNano()), uint64(time.Hour), now.Add(-50*time.Millisecond), true, digest, deltas
		l.evidence(p, p.recvAt, p.epoch, p.stamp, true)
	}
	return l
}

// nextRound moves l one heartbeat interval on from now, as if every node
// it hears had sent again at the same phase and read the summary of l's
// heartbeat at now.
func nextRound(l *liveness, now time.Time) {
	stamp := l.stampAt(now)
	for _, p := range l.nodes {
		if !p.recvAt.IsZero() {
			p.recvAt = p.recvAt.Add(HeartbeatInterval)
			p.ack, p.ackRead = stamp, true
		}
	}
}

// BenchmarkVoterOutgoing measures what a voter's heartbeat round costs it
// at 1,000 nodes (20-character names) in a settled cluster: building
// and encoding a message to each of the 999 others, with summary deltas
// (every node read the previous round's summary; nothing changed) and
// with whole summaries (nodes of the release before deltas).
func BenchmarkVoterOutgoing(b *testing.B) {
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("worker-%013d", i)
	}
	voters := byRank(slices.Clone(names))[:MaxVoters]
	slices.Sort(voters)
	for _, deltas := range []bool{true, false} {
		b.Run(fmt.Sprintf("deltas=%v", deltas), func(b *testing.B) {
			now := simStart.Add(time.Hour)
			l := settledNode(names, voters, voters[0], now, deltas)
			to := without(names, []string{voters[0]})
			l.outgoing(now, l.heartbeat(now), to)
			size := 0
			b.ReportAllocs()
			for b.Loop() {
				nextRound(l, now)
				now = now.Add(HeartbeatInterval)
				size = 0
				for _, m := range l.outgoing(now, l.heartbeat(now), to) {
					size += len(m.b)
				}
			}
			b.ReportMetric(float64(size), "bytes/round")
			b.Logf("MEASURED: a voter at 1,000 nodes, deltas %v: %v per heartbeat round (%.1f%% of a core at 10 rounds/s), %d payload bytes", deltas, b.Elapsed()/time.Duration(b.N), float64(b.Elapsed())/float64(b.N)*10/1e7, size)
		})
	}
}

// voterSimRun measures on ss, settled under voters (safety checked as ss
// says): a second of traffic, then a crash of a non-voter and, once the
// others dropped it, of a voter. It returns the traffic of a voter and of
// a non-voter, the time every quorate node took to drop each crashed
// node, and the violations.
func voterSimRun(ss *shrinkSim) (voter, other roleCost, nonVoterGone, voterGone time.Duration, violations int) {
	names := ss.names
	voters := ss.rec.Voters
	_, others := sides(names, voters)
	ss.watch = []string{others[1], voters[1]}
	before := func() map[string]traffic {
		m := map[string]traffic{}
		for x := range ss.sent {
			m[x+"/s"], m[x+"/r"] = *ss.sent[x], *ss.recv[x]
		}
		return m
	}
	b := before()
	ss.run(time.Second)
	cost := func(x string) roleCost {
		s, r := *ss.sent[x], *ss.recv[x]
		return roleCost{
			sentP: float64(s.packets - b[x+"/s"].packets), sentB: float64(s.bytes - b[x+"/s"].bytes),
			recvP: float64(r.packets - b[x+"/r"].packets), recvB: float64(r.bytes - b[x+"/r"].bytes),
		}
	}
	voter, other = cost(voters[0]), cost(others[0])
	crash := func(x string) time.Duration {
		at := ss.now
		ss.down[x] = true
		ss.run(DeadAfter + 100*time.Millisecond)
		var last time.Duration
		for _, p := range ss.quorateNodes() {
			g, ok := ss.sim.gone[[2]string{p, x}]
			if !ok {
				return -1
			}
			last = max(last, g.Sub(at))
		}
		return last
	}
	nonVoterGone = crash(others[1])
	voterGone = crash(voters[1])
	return voter, other, nonVoterGone, voterGone, len(ss.violations)
}

// newStartedVoterSim returns a shrinkSim of the nodes names started at
// once from no record with the speaker's defaults (newFirstRecordSim),
// run until every node holds its lease (at most 10 s) and JointHold more;
// it checks safety every checkEvery (the check costs n² a step) and
// records the departures of the nodes of watch. It also says how the
// start went.
func newStartedVoterSim(t *testing.T, names []string, checkEvery time.Duration) (*shrinkSim, startup) {
	ss := newFirstRecordSim(t, names, true, "")
	ss.checkEvery = checkEvery
	var s startup
	for len(ss.quorateNodes()) < len(names) && ss.now.Sub(simStart) < 10*time.Second {
		ss.run(time.Millisecond)
		if s.first == 0 && ss.rec.Rev > 0 {
			s.first, s.before = ss.now.Sub(simStart), *ss.sent[names[0]]
		}
	}
	s.all = ss.now.Sub(simStart)
	ss.run(JointHold)
	return ss, s
}

// startup is how a start from no record went: when the first record was
// written, what the first node had sent before it, and when every node
// held its lease.
type startup struct {
	first, all time.Duration
	before     traffic
}

func (s startup) String() string {
	return fmt.Sprintf("first record at %v (a node had sent %d packets, %d bytes), every node quorate at %v", s.first, s.before.packets, s.before.bytes, s.all)
}

// TestLivenessVotersCost checks on the simulator that, with voters, a
// non-voter sends MaxVoters heartbeats per interval and receives as many,
// a voter one to every other node, and a voter's message to each node is
// one packet (its report is a summary).
func TestLivenessVotersCost(t *testing.T) {
	const n = 12
	voter, other, _, _, violations := voterSimRun(newScaleSim(nil, nodeNames(n), ""))
	perSecond := float64(time.Second / HeartbeatInterval)
	if violations > 0 {
		t.Errorf("%d violations", violations)
	}
	if want := MaxVoters * perSecond; other.sentP != want || other.recvP != want {
		t.Errorf("a non-voter %v, want %.0f packets/s each way", other, want)
	}
	if want := (n - 1) * perSecond; voter.sentP != want || voter.recvP != want {
		t.Errorf("a voter %v, want %.0f packets/s each way", voter, want)
	}
	t.Logf("voter: %v; non-voter: %v", voter, other)
}

// TestLivenessVotersLarge runs 250 nodes under five voters on the
// simulator, safety checked every simulated millisecond: the voters split
// 3 | 2 with the non-voters split evenly, then the split heals, then a
// voter and 20 non-voters crash at once. Only the side of the three voters
// holds leases during the split, every live node holds its lease after
// the heal and after the crash, and nothing overlaps.
func TestLivenessVotersLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("250 nodes: about 30 s")
	}
	names := nodeNames(250)
	ss, _ := newStartedVoterSim(t, names, time.Millisecond)
	voters, others := sides(names, ss.rec.Voters)
	a := append(slices.Clone(voters[:3]), others[:len(others)/2]...)
	b := without(names, a)
	ss.partition(a, b, true)
	ss.run(3 * time.Second)
	if q := ss.quorateNodes(); !slices.Equal(sorted(q), sorted(a)) {
		t.Errorf("during the split %d nodes quorate, want the %d of the three voters' side", len(q), len(a))
	}
	ss.partition(a, b, false)
	ss.run(3 * time.Second)
	if q := ss.quorateNodes(); len(q) != len(names) {
		t.Errorf("after the heal %d nodes quorate, want %d", len(q), len(names))
	}
	crashed := append([]string{voters[0]}, others[:20]...)
	for _, x := range crashed {
		ss.down[x] = true
	}
	ss.run(2 * time.Second)
	live := sorted(without(names, crashed))
	if q := ss.quorateNodes(); !slices.Equal(sorted(q), live) {
		t.Errorf("after the crash %d nodes quorate, want %d", len(q), len(live))
	}
	for _, p := range live[:10] {
		if got := ss.nodes[p].alive(ss.now); !slices.Equal(got, live) {
			t.Errorf("%s sees %d alive, want %d", p, len(got), len(live))
		}
	}
	if len(ss.violations) > 0 {
		t.Errorf("%d violations, first: %s", len(ss.violations), ss.violations[0])
	}
}
