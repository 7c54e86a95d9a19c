package l2

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// nodeNames returns n node names, n0 to n(n-1).
func nodeNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i)
	}
	return names
}

// byRank returns names in the order of chooseVoters' candidates.
func byRank(names []string) []string {
	out := slices.Clone(names)
	sortByRank(out)
	return out
}

func sorted(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return out
}

func TestChooseVoters(t *testing.T) {
	nine := nodeNames(9)
	ranked := byRank(nine)
	tests := []struct {
		name string
		v    RecordView
		out  []string
		want []string
	}{
		{name: "voters off", v: RecordView{Known: nine, Alive: nine}},
		{name: "seven nodes: everyone votes, by name", v: RecordView{Known: nine[:7], Alive: nine[:7], MaxVoters: 5}, want: nine[:7]},
		{
			name: "nine nodes, two gone: everyone else votes, by name", out: nine[7:],
			v: RecordView{Known: nine, Alive: nine, Gone: nine[7:], MaxVoters: 5}, want: nine[:7],
		},
		{
			name: "seven nodes, one gone but alive: it still votes", out: nil,
			v: RecordView{Known: nine[:7], Alive: nine[:7], Gone: nine[6:7], MaxVoters: 5}, want: nine[:7],
		},
		{
			name: "a node joins seven: five by rank", v: RecordView{Known: nine[:8], Alive: nine[:8], MaxVoters: 5, Current: MemberRecord{Rev: 2, Voters: nine[:7]}},
			want: nine[:5],
		},
		{name: "nine nodes: five by rank", v: RecordView{Known: nine, Alive: nine, MaxVoters: 5}, want: sorted(ranked[:5])},
		{
			name: "current voters kept, even dead, while not gone",
			v:    RecordView{Known: nine, Alive: nine[1:], MaxVoters: 5, Current: MemberRecord{Rev: 2, Voters: nine[:5]}},
			want: nine[:5],
		},
		{
			name: "a gone voter still alive in the view stays",
			v: RecordView{
				Known: nine, Alive: nine, Gone: []string{nine[0]},
				MaxVoters: 5, Current: MemberRecord{Rev: 2, Voters: nine[:5]},
			},
			want: nine[:5],
		},
		{
			name: "a gone, dead voter is replaced by the best-ranked alive node",
			v: RecordView{
				Known: nine, Alive: without(nine, []string{nine[0], ranked[5]}), Gone: []string{nine[0]},
				MaxVoters: 5, Current: MemberRecord{Rev: 2, Voters: nine[:5]},
			},
			want: sorted(append(slices.Clone(nine[1:5]), firstNotIn(ranked, append(slices.Clone(nine[:5]), ranked[5])))),
		},
		{
			name: "a deleted voter is replaced",
			v:    RecordView{Known: nine[1:], Alive: nine[1:], MaxVoters: 5, Current: MemberRecord{Rev: 2, Voters: nine[:5]}},
			want: sorted(append(slices.Clone(nine[1:5]), firstNotIn(ranked, nine[:5]))),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := chooseVoters(tc.v, tc.out)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("voters (-want +got):\n%s", diff)
			}
		})
	}
}

// firstNotIn returns the first of ranked not in not.
func firstNotIn(ranked, not []string) string {
	for _, n := range ranked {
		if !slices.Contains(not, n) {
			return n
		}
	}
	return ""
}

func TestNextRecordVoters(t *testing.T) {
	nine := nodeNames(9)
	voters := sorted(byRank(nine)[:5])
	view := func(cur MemberRecord, read4 bool) RecordView {
		return RecordView{Current: cur, Known: nine, Alive: nine, Quorate: true, SettledFor: JointHold, AllRead3: true, AllRead4: read4, MaxVoters: 5}
	}
	tests := []struct {
		name string
		v    RecordView
		want MemberRecord
		ok   bool
	}{
		{name: "not every node reads version 4", v: view(MemberRecord{}, false)},
		{
			name: "not every node reads version 4: a gone, dead node still leaves, unnamed",
			v: func() RecordView {
				v := view(MemberRecord{}, false)
				v.Gone, v.Alive = nine[8:], nine[:8]
				return v
			}(),
			want: MemberRecord{Rev: 1, Joint: true, NextOut: nine[8:]}, ok: true,
		},
		{
			name: "three nodes: all three named",
			v:    func() RecordView { v := view(MemberRecord{}, true); v.Known, v.Alive = nine[:3], nine[:3]; return v }(),
			want: MemberRecord{Rev: 1, Joint: true, NextVoters: nine[:3]}, ok: true,
		},
		{
			name: "a fourth joins three named voters: a joint record adds it",
			v: func() RecordView {
				v := view(MemberRecord{Rev: 2, Voters: nine[:3]}, true)
				v.Known, v.Alive = nine[:4], nine[:4]
				return v
			}(),
			want: MemberRecord{Rev: 3, Joint: true, Voters: nine[:3], NextVoters: nine[:4]}, ok: true,
		},
		{name: "voters start with a joint record", v: view(MemberRecord{}, true), want: MemberRecord{Rev: 1, Joint: true, NextVoters: voters}, ok: true},
		{name: "and complete", v: view(MemberRecord{Rev: 1, Joint: true, NextVoters: voters}, true), want: MemberRecord{Rev: 2, Voters: voters}, ok: true},
		{name: "then nothing to do", v: view(MemberRecord{Rev: 2, Voters: voters}, false)},
		{
			name: "voters off again: back to every node through a joint record",
			v:    func() RecordView { v := view(MemberRecord{Rev: 2, Voters: voters}, true); v.MaxVoters = 0; return v }(),
			want: MemberRecord{Rev: 3, Voters: voters, Joint: true}, ok: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NextRecord(tc.v)
			if ok != tc.ok {
				t.Fatalf("NextRecord = %+v, %v; want ok %v", got, ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeartbeatVersion4(t *testing.T) {
	rec := MemberRecord{Rev: 3, Out: []string{"x"}, Joint: true, NextOut: []string{"x", "y"}, Voters: []string{"a", "b", "c"}, NextVoters: []string{"a", "b", "d"}}
	tests := []struct {
		name string
		hb   heartbeat
	}{
		{name: "by name", hb: heartbeat{
			From: "a", Epoch: 9, Seq: 4, Stamp: 77, Quorate: true, Reads3: true, Reads4: true, Rec: rec, Digest: 0xfeed,
			Heard: []heard{{Node: "b", Epoch: 1, Stamp: 2, Age: 3 * time.Millisecond, Quorate: true}},
		}},
		{name: "summary", hb: heartbeat{
			From: "a", Epoch: 9, Seq: 4, Stamp: 77, Reads3: true, Reads4: true, Rec: rec, Digest: 0xfeed,
			Summary: []byte{0, 0x81, 3}, Heard: []heard{{Node: "b", Epoch: 1, Stamp: 2}},
		}},
		{name: "delta, reads deltas, echo of a summary read", hb: heartbeat{
			From: "a", Epoch: 9, Seq: 4, Stamp: 77, Reads3: true, Reads4: true, ReadsDelta: true, Rec: rec, Digest: 0xfeed,
			Delta: &summaryDelta{Base: 70, Len: 300, Index: []int{0, 7, 299}, B: []byte{0, 0x81, 3}}, Heard: []heard{{Node: "b", Epoch: 1, Stamp: 2, Summarised: true}},
		}},
		{name: "empty delta", hb: heartbeat{
			From: "a", Epoch: 9, Seq: 4, Stamp: 77, Reads3: true, Reads4: true, ReadsDelta: true, Rec: rec, Digest: 0xfeed,
			Delta: &summaryDelta{Base: 70, Len: 3},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs := encodeHeartbeats(tc.hb)
			if len(msgs) != 1 || msgs[0][len(heartbeatMagic)] != heartbeatVersion4 {
				t.Fatalf("encoded %d messages, first of version %d", len(msgs), msgs[0][len(heartbeatMagic)])
			}
			got, err := decodeHeartbeat(msgs[0])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.hb, got, cmp.AllowUnexported(heartbeat{}, heard{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

// newVoterSim returns a shrinkSim of n nodes that take part in voter sets
// (with rule broken left out, if set), settled under a record with
// MaxVoters voters, and those voters.
func newVoterSim(t *testing.T, n int, broken brokenRule) (*shrinkSim, []string) {
	ss := newScaleSim(t, nodeNames(n), broken)
	if len(ss.rec.Voters) != MaxVoters {
		t.Fatalf("record %+v, want %d voters", ss.rec, MaxVoters)
	}
	if q := ss.quorateNodes(); len(q) != n {
		t.Fatalf("quorate after settling: %v", q)
	}
	return ss, ss.rec.Voters
}

// newScaleSim returns a shrinkSim of the nodes names that take part in
// voter sets, run until the record is at revision 2 (at most 20 s) and
// JointHold more.
func newScaleSim(t *testing.T, names []string, broken brokenRule) *shrinkSim {
	return newScaleSimWith(t, names, func(ss *shrinkSim) { ss.broken = broken })
}

// newScaleSimWith is newScaleSim with the simulator set up by setup
// before the nodes start.
func newScaleSimWith(t *testing.T, names []string, setup func(*shrinkSim)) *shrinkSim {
	ss := newShrinkSim(t, names...)
	ss.scale = true
	setup(ss)
	for i, x := range names {
		ss.tieSim.restart(x)
		ss.next[x] = ss.now.Add(time.Duration(i*37%100) * time.Millisecond)
	}
	for ss.rec.Rev < 2 && ss.now.Sub(simStart) < 20*time.Second {
		ss.run(100 * time.Millisecond)
	}
	ss.run(JointHold)
	return ss
}

// sides returns the voters and the non-voters among names.
func sides(names, voters []string) (v, nv []string) {
	for _, n := range names {
		if slices.Contains(voters, n) {
			v = append(v, n)
		} else {
			nv = append(nv, n)
		}
	}
	return v, nv
}

// addLate starts node x, known at once only to the nodes of knownBy (as if
// memberlist had not told the others yet): the others' known membership,
// and so their summaries' digest, lacks it.
func (ss *shrinkSim) addLate(x string, knownBy []string) {
	ss.names = append(ss.names, x)
	ss.sent[x], ss.recv[x] = &traffic{}, &traffic{}
	ss.restart(x, false)
	for _, o := range ss.names {
		if o != x && !slices.Contains(knownBy, o) {
			ss.nodes[o].forget(ss.now, x)
		}
	}
}

// TestLivenessVoters runs failures around a settled voter set in a
// cluster of 12 nodes, checking safety every simulated millisecond, and
// that breaking each rule of the voter protocol lets the simulator find two
// nodes that both hold their lease while one sees the other dead.
func TestLivenessVoters(t *testing.T) {
	const n = 12
	tests := []struct {
		name   string
		broken brokenRule
		unsafe unsafeMode
		// event happens once the voters are settled; it returns the nodes
		// that must hold their lease at the end (nil: not checked).
		event func(ss *shrinkSim, voters, others []string) []string
		// dropped: a node that every quorate survivor must find dead
		// within DeadAfter (plus a step) of the event.
		dropped func(voters, others []string) string
	}{
		{
			name: "a non-voter crashes",
			event: func(ss *shrinkSim, voters, others []string) []string {
				ss.down[others[0]] = true
				return without(ss.names, others[:1])
			},
			dropped: func(_, others []string) string { return others[0] },
		},
		{
			name: "a voter crashes",
			event: func(ss *shrinkSim, voters, others []string) []string {
				ss.down[voters[0]] = true
				return without(ss.names, voters[:1])
			},
			dropped: func(voters, _ []string) string { return voters[0] },
		},
		{
			name: "two voters crash",
			event: func(ss *shrinkSim, voters, others []string) []string {
				ss.down[voters[0]], ss.down[voters[1]] = true, true
				return without(ss.names, voters[:2])
			},
		},
		{
			name:  "partition splits the voters 3|2, most non-voters with the 2",
			event: splitVoters,
		},
		{
			name:   "the same, unsafe",
			broken: brokenAnyEcho, event: splitVoters,
		},
		{
			name:  "a voter crashes, then is gone and replaced",
			event: replaceVoter,
		},
		{
			name: "API server away, a voter crashes: nothing written, the rest serve",
			event: func(ss *shrinkSim, voters, others []string) []string {
				for _, x := range ss.names {
					ss.apiDown[x] = true
				}
				ss.down[voters[0]] = true
				ss.gone = voters[:1]
				return without(ss.names, voters[:1])
			},
		},
		{
			name:  "a voter changes sides as its replacement starts",
			event: voterChangesSides,
		},
		{name: "the same, unsafe", unsafe: noJoint, event: voterChangesSides},
		{name: "the same, unsafe", unsafe: noSettling, event: voterChangesSides},
		{
			name:  "a node joins, known to no other node yet",
			event: lateJoin,
		},
		{name: "the same, unsafe", broken: brokenUnknownInSummary, event: lateJoin},
	}
	for _, tc := range tests {
		name := tc.name
		if tc.broken != "" {
			name += ": " + string(tc.broken)
		}
		if tc.unsafe != "" {
			name += ": " + string(tc.unsafe)
		}
		t.Run(name, func(t *testing.T) {
			ss, voters := newVoterSim(t, n, tc.broken)
			ss.unsafe = tc.unsafe
			_, others := sides(ss.names, voters)
			at := ss.now
			want := tc.event(ss, voters, others)
			ss.run(8 * time.Second)
			if tc.broken != "" || tc.unsafe != "" {
				if len(ss.violations) == 0 {
					t.Fatalf("no violation found; record %+v, quorate %v, voters %v", ss.rec, ss.quorateNodes(), voters)
				}
				t.Logf("%d violations, first: %s", len(ss.violations), ss.violations[0])
				return
			}
			ss.checkSafe()
			if want != nil {
				if diff := cmp.Diff(sorted(want), ss.quorateNodes()); diff != "" {
					t.Errorf("quorate at the end (-want +got):\n%s", diff)
				}
			}
			if tc.dropped != nil {
				x := tc.dropped(voters, others)
				for _, p := range ss.quorateNodes() {
					g, ok := ss.sim.gone[[2]string{p, x}]
					if !ok {
						t.Fatalf("%s never dropped %s", p, x)
					}
					// A summary errs towards "alive" by less than
					// summaryBand units (summary_delta.go).
					if d := g.Sub(at); d < DeadAfter-HeartbeatInterval || d > DeadAfter+summaryBand*summaryAgeUnit+2*time.Millisecond {
						t.Errorf("%s dropped %s %v after the crash", p, x, d)
					}
				}
			}
		})
	}
}

// splitVoters cuts three voters and two non-voters off from the two other
// voters and the other non-voters: the side with three voters serves.
func splitVoters(ss *shrinkSim, voters, others []string) []string {
	a := append(slices.Clone(voters[:3]), others[:2]...)
	b := without(ss.names, a)
	ss.partition(a, b, true)
	return a
}

// replaceVoter crashes a voter, which the API server reports gone: it is
// replaced through a joint record, after which every other node serves,
// and two more voters may crash.
func replaceVoter(ss *shrinkSim, voters, others []string) []string {
	ss.down[voters[0]] = true
	ss.gone = voters[:1]
	ss.untilRev(4, 10*time.Second)
	if slices.Contains(ss.rec.Voters, voters[0]) || len(ss.rec.Voters) != MaxVoters {
		ss.t.Errorf("record after the replacement: %+v", ss.rec)
	}
	ss.run(JointHold)
	ss.down[ss.rec.Voters[0]], ss.down[ss.rec.Voters[1]] = true, true
	return without(ss.names, append(slices.Clone(voters[:1]), ss.rec.Voters[:2]...))
}

// voterChangesSides cuts voters v3 and v4 off with a non-voter, reports v4
// gone, lets only v0 reach the API server, and when v0 writes the joint
// record that replaces v4, cuts v2 off from v0's side and a second later
// joins it to v3 and v4. Under the joint record v0's side has two of the
// old voters; v2, v3 and v4 are three of them and serve.
func voterChangesSides(ss *shrinkSim, voters, others []string) []string {
	b := []string{voters[3], voters[4], others[0]}
	a := without(ss.names, b)
	ss.partition(a, b, true)
	for _, x := range ss.names {
		ss.apiDown[x] = x != voters[0]
	}
	ss.gone = voters[4:]
	var cut time.Time
	ss.after = chain(ss.after, func() {
		switch {
		case ss.rec.Rev >= 3 && cut.IsZero():
			cut = ss.now
			ss.partition(a, voters[2:3], true)
		case !cut.IsZero() && ss.now.Sub(cut) == time.Second:
			ss.partition(voters[2:3], b, false)
		}
	})
	return append(slices.Clone(b), voters[2])
}

// lateJoin starts a node that no other node knows yet, and that reaches
// v0, v1 and v2 only: it holds its lease with them, and every other node
// must learn of it from their reports, by name, since their summaries
// cannot name it.
func lateJoin(ss *shrinkSim, voters, others []string) []string {
	ss.addLate("zz-late", nil)
	ss.partition([]string{"zz-late"}, voters[3:], true)
	ss.partition([]string{"zz-late"}, others, true)
	return slices.Clone(ss.names)
}

// TestLivenessVotersRandom runs random sequences of crashes, restarts,
// partitions (of random halves of the cluster, which split the voters),
// heals, delays, API server outages and changes of what the API server
// says is gone, on 10 nodes with voters, checking after every simulated
// millisecond that no two quorate nodes miss each other and that no two
// count the tie-breaker.
func TestLivenessVotersRandom(t *testing.T) {
	total, deltas, wholes := 0, 0, 0
	for seed := range uint64(8) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 41))
			ss, _ := newVoterSim(t, 10, "")
			ss.jitter = 3 * time.Millisecond
			names := slices.Clone(ss.names)
			for range 30 {
				x := names[rng.IntN(len(names))]
				ev := rng.IntN(10)
				if testing.Verbose() {
					t.Logf("%v: event %d on %s", ss.now.Sub(simStart), ev, x)
				}
				switch ev {
				case 0, 1, 2, 3, 4, 5:
					ss.randomEvent(rng, names, ev, x, func(n string) { ss.restart(n, false) })
				case 6:
					// A random half cut off from the rest.
					perm := rng.Perm(len(names))
					var half []string
					for _, i := range perm[:len(names)/2] {
						half = append(half, names[i])
					}
					ss.partition(half, without(names, half), true)
				case 7, 8:
					ss.flipGone(x)
				case 9:
					// Under explicit voters, half the others lose x from
					// their known membership (but not what they heard of
					// it) for 300 ms, as when memberlist has not told them
					// of a node yet: their summaries' digests differ.
					// (Without explicit voters the known membership is
					// the voter set, and only grows: see
					// TestLivenessJoinsDuringSplit.)
					if len(ss.rec.Voters) == 0 || ss.rec.Joint {
						break
					}
					var unknown []string
					for _, o := range names {
						if o != x && rng.IntN(2) == 0 {
							delete(ss.nodes[o].known, x)
							ss.nodes[o].stale = true
							unknown = append(unknown, o)
						}
					}
					ss.run(300 * time.Millisecond)
					for _, o := range unknown {
						ss.nodes[o].join(ss.now, x)
					}
				}
				ss.run(time.Duration(100+rng.IntN(3000)) * time.Millisecond)
			}
			ss.checkSafe()
			total += ss.writes
			deltas, wholes = deltas+ss.deltas, wholes+ss.wholes
		})
	}
	t.Logf("%d records written over all runs; summaries delivered: %d deltas, %d whole", total, deltas, wholes)
	if deltas < wholes {
		t.Errorf("fewer deltas than whole summaries")
	}
}

// TestLivenessVotersUpgrade upgrades the speakers of today's release (no
// voters, heartbeat versions 2 and 3, a record with one node out) one at a
// time to speakers that take part in voter sets, nine of them (five voters
// afterwards) and three (all three named): the membership stays whole and
// quorate after every step, no record with voters is written while one of
// them is not upgraded, and once all are, voters appear (version 4) and
// every node is still quorate and alive in every view.
func TestLivenessVotersUpgrade(t *testing.T) {
	for _, n := range []int{10, 4} {
		t.Run(fmt.Sprintf("%d nodes, one out", n), func(t *testing.T) {
			names := nodeNames(n)
			ss := newShrinkSim(t, names...)
			ss.down[names[n-1]] = true
			ss.gone = names[n-1:]
			ss.untilRev(2, 15*time.Second)
			live := names[:n-1]
			ss.scale = true
			for i, x := range live {
				ss.down[x] = true
				ss.run(time.Second)
				ss.restart(x, false)
				ss.run(3 * time.Second)
				if q := ss.quorateNodes(); !slices.Equal(q, live) {
					t.Errorf("after upgrading %s: quorate %v", x, q)
				}
				for _, o := range live {
					if got := ss.nodes[o].alive(ss.now); !slices.Equal(got, live) {
						t.Errorf("after upgrading %s: %s sees %v alive", x, o, got)
					}
				}
				if i < len(live)-1 && ss.rec.hasVoters() {
					t.Errorf("record %+v with voters while a speaker of today's release runs", ss.rec)
				}
			}
			ss.untilRev(4, 10*time.Second)
			ss.run(2 * time.Second)
			ss.checkSafe()
			want := MaxVoters
			if len(live) <= SmallCluster {
				want = len(live)
			}
			if len(ss.rec.Voters) != want {
				t.Errorf("record after the upgrade: %+v, want %d voters", ss.rec, want)
			}
			if q := ss.quorateNodes(); !slices.Equal(q, live) {
				t.Errorf("quorate after the upgrade: %v", q)
			}
			for _, o := range live {
				if got := ss.nodes[o].alive(ss.now); !slices.Equal(got, live) {
					t.Errorf("after the upgrade: %s sees %v alive", o, got)
				}
			}
		})
	}
}

// TestLivenessVotersChangeSides measures, with voters, the window of
// TestLivenessChangeSides: voter v2, on the side of v0 and v1, is cut off
// from it and joined to v3 and v4 in the same instant. The views overlap
// for at most a lease, as without voters; the test fails if it grows.
func TestLivenessVotersChangeSides(t *testing.T) {
	ss, voters := newVoterSim(t, 12, "")
	_, others := sides(ss.names, voters)
	a := append(slices.Clone(voters[:3]), others[:3]...)
	b := without(ss.names, a)
	ss.partition(a, b, true)
	ss.run(3 * time.Second)
	ss.partition(without(a, voters[2:3]), voters[2:3], true)
	ss.partition(voters[2:3], b, false)
	moved := ss.now
	var first, last time.Time
	ss.after = chain(ss.after, func() {
		if len(ss.violations) > 0 {
			if first.IsZero() {
				first = ss.now
			}
			last = ss.now
			ss.violations = nil
		}
	})
	ss.run(3 * time.Second)
	if q := ss.quorateNodes(); !slices.Equal(q, sorted(append(slices.Clone(b), voters[2]))) {
		t.Errorf("quorate at the end: %v", q)
	}
	if !first.IsZero() {
		t.Errorf("views overlap from %v to %v after the move; want none (RegainHoldDown > QuorumLease)", first.Sub(moved), last.Sub(moved))
	}
}
