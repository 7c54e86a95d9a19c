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

// recordPoll is how often a node of shrinkSim reads the membership record
// and considers writing the next one.
const recordPoll = 500 * time.Millisecond

// shrinkSim is a tieSim whose nodes also follow the membership record in
// the simulated API server: every recordPoll each node that reaches it
// reads the record and writes what NextRecord says, conditionally on the
// revision read, as the API server's resourceVersion makes a write.
type shrinkSim struct {
	*tieSim
	// rec is the record in the API server; gone what the API server says
	// of the nodes (NotReady for longer than the configured time).
	rec     MemberRecord
	gone    []string
	nextRec map[string]time.Time
	writes  int
	// unsafe, if set, breaks one rule of the protocol, to show that the
	// checks catch what it prevents.
	unsafe unsafeMode
	// keepKnown keeps the known list with the record (see
	// restart_record_test.go); known is the list stored.
	keepKnown bool
	known     []string
}

// unsafeMode names a rule of the record protocol left out.
type unsafeMode string

const (
	// noJoint writes the new voter set at once instead of a joint record.
	noJoint unsafeMode = "new voter set written at once"
	// noSettling writes the next record as soon as the writer is quorate.
	noSettling unsafeMode = "next record written without settling"
	// staleRestart lets a restarted node send and echo before it read
	// the record, under revision 0.
	staleRestart unsafeMode = "restarted node echoes before reading the record"
)

func newShrinkSim(t *testing.T, names ...string) *shrinkSim {
	ss := &shrinkSim{tieSim: newTieSim(t, names...), nextRec: map[string]time.Time{}}
	tie := ss.tick
	ss.tick = func(n string) {
		if tie != nil {
			tie(n)
		}
		ss.recordStep(n)
	}
	return ss
}

// recordStep runs n's record loop.
func (ss *shrinkSim) recordStep(n string) {
	l := ss.nodes[n]
	if ss.apiDown[n] || l.legacy || ss.now.Before(ss.nextRec[n]) {
		return
	}
	ss.nextRec[n] = ss.now.Add(recordPoll)
	if ss.keepKnown {
		l.learn(ss.now, ss.known)
	}
	l.setRecord(ss.now, ss.rec)
	if l.takeRegained() {
		ss.send(n, l.heartbeat(ss.now))
	}
	ss.writeKnown(n)
	// Without settling, a writer goes on at once (under the rule, the
	// record it just wrote is never settled yet).
	for ss.writeNext(n) && ss.unsafe == noSettling {
	}
}

// writeNext writes the record NextRecord says for n, if any.
func (ss *shrinkSim) writeNext(n string) bool {
	l := ss.nodes[n]
	v := l.recordView(ss.now, ss.gone)
	if ss.unsafe == noSettling && v.Quorate {
		v.SettledFor = JointHold
	}
	next, ok := NextRecord(v)
	if !ok || next.Rev != ss.rec.Rev+1 {
		return false
	}
	if ss.unsafe == noJoint && next.Joint {
		next = MemberRecord{Rev: next.Rev, Out: next.NextOut, Voters: next.NextVoters}
	}
	ss.rec = next
	ss.writes++
	l.setRecord(ss.now, next)
	if l.takeRegained() {
		ss.send(n, l.heartbeat(ss.now))
	}
	if testing.Verbose() && ss.t != nil {
		ss.t.Logf("%v: %s writes %+v", ss.now.Sub(simStart), n, next)
	}
	return true
}

// restart restarts n, which reads the record before it sends anything.
func (ss *shrinkSim) restart(n string, legacy bool) {
	ss.tieSim.restart(n)
	l := ss.nodes[n]
	l.legacy = legacy
	if !legacy && ss.unsafe != staleRestart {
		l.needRecord(ss.now)
	}
	delete(ss.nextRec, n)
}

// gaps counts, after every step, the milliseconds at which node n did
// not hold its lease.
func (ss *shrinkSim) gaps(n string) *int {
	var gaps int
	ss.after = chain(ss.after, func() {
		if !ss.quorate(n) {
			gaps++
		}
	})
	return &gaps
}

// untilRev runs until the record reaches rev, at most within.
func (ss *shrinkSim) untilRev(rev uint64, within time.Duration) time.Duration {
	start := ss.now
	for ss.rec.Rev < rev {
		if ss.now.Sub(start) > within {
			ss.t.Fatalf("record at %+v after %v, want revision %d", ss.rec, within, rev)
		}
		ss.run(10 * time.Millisecond)
	}
	return ss.now.Sub(start)
}

func (ts *tieSim) checkSafe() {
	ts.t.Helper()
	if len(ts.violations) > 0 {
		ts.t.Errorf("%d safety violations, first: %s", len(ts.violations), ts.violations[0])
	}
	if len(ts.double) > 0 {
		ts.t.Errorf("two nodes counted the tie-breaker %d times, first: %s", len(ts.double), ts.double[0])
	}
}

// TestLivenessShrinkDeadThenReboot: three nodes, c dead for good and
// reported gone by the API server; the others leave it out of the voter
// sets, so that b's reboot afterwards leaves a serving (with the
// tie-breaker, as one of two). Without the record a goes dark.
func TestLivenessShrinkDeadThenReboot(t *testing.T) {
	for _, shrink := range []bool{true, false} {
		t.Run(fmt.Sprintf("shrink %v", shrink), func(t *testing.T) {
			ss := newShrinkSim(t, "a", "b", "c")
			ss.run(TieKeep + 3*time.Second)
			if q := ss.quorateNodes(); len(q) != 3 {
				t.Fatalf("quorate after settling: %v", q)
			}
			ss.down["c"] = true
			ss.run(3 * time.Second)
			if shrink {
				ss.gone = []string{"c"}
				d := ss.untilRev(2, 10*time.Second)
				t.Logf("c left the voter sets %v after the API server said it was gone", d)
				if diff := cmp.Diff(MemberRecord{Rev: 2, Out: []string{"c"}}, ss.rec, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("record (-want +got):\n%s", diff)
				}
			}
			ss.run(time.Second)
			gaps := ss.gaps("a")
			ss.down["b"] = true
			ss.run(2 * time.Second)
			ss.restart("b", false)
			ss.run(3 * time.Second)
			ss.checkSafe()
			if shrink {
				if *gaps > 0 {
					t.Errorf("a did not hold its lease for %d ms through b's reboot", *gaps)
				}
				if q := ss.quorateNodes(); !slices.Equal(q, []string{"a", "b"}) {
					t.Errorf("quorate after b's reboot: %v, want a and b", q)
				}
			} else if *gaps < 1000 {
				t.Errorf("without the record a lost its lease for only %d ms: the scenario tests nothing", *gaps)
			}
		})
	}
}

// TestLivenessShrink runs partitions around a change of the voter sets.
func TestLivenessShrink(t *testing.T) {
	abcde := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name string
		// event happens once all are quorate; gone is what the API server
		// says from then on.
		event func(ss *shrinkSim)
		gone  []string
		// wantRec is the record at the end; wantQuorate the nodes
		// quorate at the end.
		wantRec     MemberRecord
		wantQuorate []string
		// unsafe breaks a rule: the run must find a violation.
		unsafe unsafeMode
	}{
		{
			// d and e still run, but the API server says they are gone.
			// e, cut off from a, b and d, leaves the voter sets; d, which
			// they still hear, stays (it costs the quorum nothing). c
			// and e, which reach the API server too, never hold a lease.
			name:  "five nodes, d and e gone but running, split abd|ce, API server reachable from both",
			event: func(ss *shrinkSim) { ss.partition([]string{"a", "b", "d"}, []string{"c", "e"}, true) },
			gone:  []string{"d", "e"}, wantRec: MemberRecord{Rev: 2, Out: []string{"e"}}, wantQuorate: []string{"a", "b", "d"},
		},
		{
			// The API server says the majority side is gone, but the
			// minority, which reaches it, is not quorate and writes
			// nothing; the majority cannot reach it: nothing shrinks.
			name: "five nodes split abd|ce, API server reachable from ce only, says a, b, d gone",
			event: func(ss *shrinkSim) {
				ss.partition([]string{"a", "b", "d"}, []string{"c", "e"}, true)
				ss.apiDown["a"], ss.apiDown["b"], ss.apiDown["d"] = true, true, true
			},
			gone: []string{"a", "b", "d"}, wantQuorate: []string{"a", "b", "d"},
		},
		{
			// d and e are cut off from the others (running, never
			// restarted); a, which alone reaches the API server, starts
			// the change; at that moment c is cut off from a and b, and
			// a second later reaches d and e instead. Under the joint record a and b (2
			// of 5) are no majority of the old set, and c, d, e (3 of 5,
			// still without the record) never settle it, so nothing
			// completes; c, d and e serve.
			name:  "five nodes, d and e cut off and gone, c changes sides as the change starts",
			event: changeSides,
			gone:  []string{"d", "e"}, wantRec: MemberRecord{Rev: 1, Joint: true, NextOut: []string{"d", "e"}}, wantQuorate: []string{"c", "d", "e"},
		},
		{
			// The same without the joint record: a and b are 2 of 3 of
			// the new set while c, d and e, which never saw it, are 3 of
			// 5 of the old: both sides serve.
			name:  "the same, unsafe",
			event: changeSides, gone: []string{"d", "e"}, unsafe: noJoint,
		},
		{
			// Without waiting to settle, a completes the change while c's
			// last echoes still count, and a and b serve under the new
			// set while c, d and e serve under the old one.
			name:  "the same, unsafe",
			event: changeSides, gone: []string{"d", "e"}, unsafe: noSettling,
		},
		{
			// d and e (cut off, running) are out; then c restarts among
			// them, cut off from a and b, without the API server: it
			// stays silent until it can read the record, so only a and b
			// (2 of the 3 voters) serve.
			name:  "five nodes, d and e out, c restarts among them without the API server",
			event: restartAmongOut, gone: []string{"d", "e"},
			wantRec: MemberRecord{Rev: 2, Out: []string{"d", "e"}}, wantQuorate: []string{"a", "b"},
		},
		{
			// Were it to echo under revision 0 at once, c, d and e would
			// be 3 of the old 5 while a and b are 2 of the new 3.
			name:  "the same, unsafe",
			event: restartAmongOut, gone: []string{"d", "e"}, unsafe: staleRestart,
		},
	}
	for _, tc := range tests {
		name := tc.name
		if tc.unsafe != "" {
			name += ": " + string(tc.unsafe)
		}
		t.Run(name, func(t *testing.T) {
			ss := newShrinkSim(t, abcde...)
			ss.unsafe = tc.unsafe
			ss.run(TieKeep + 3*time.Second)
			if q := ss.quorateNodes(); len(q) != len(abcde) {
				t.Fatalf("quorate after settling: %v", q)
			}
			tc.event(ss)
			ss.gone = tc.gone
			ss.run(12 * time.Second)
			if tc.unsafe != "" {
				if len(ss.violations) == 0 {
					t.Fatal("no violation found")
				}
				t.Logf("%d violations, first: %s", len(ss.violations), ss.violations[0])
				return
			}
			ss.checkSafe()
			if diff := cmp.Diff(tc.wantRec, ss.rec, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantQuorate, ss.quorateNodes()); diff != "" {
				t.Errorf("quorate at the end (-want +got):\n%s", diff)
			}
		})
	}
}

// changeSides cuts d and e off, lets only a reach the API server, and when
// a writes the first record cuts c off from a and b, then a second
// later joins it to d and e. (A node that changes sides in one instant:
// see TestLivenessChangeSides.)
func changeSides(ss *shrinkSim) {
	ss.partition([]string{"a", "b", "c"}, []string{"d", "e"}, true)
	for _, n := range []string{"b", "c", "d", "e"} {
		ss.apiDown[n] = true
	}
	var cut time.Time
	ss.after = chain(ss.after, func() {
		switch {
		case ss.rec.Rev >= 1 && cut.IsZero():
			cut = ss.now
			ss.partition([]string{"a", "b"}, []string{"c"}, true)
		case !cut.IsZero() && ss.now.Sub(cut) == time.Second:
			ss.partition([]string{"c"}, []string{"d", "e"}, false)
		}
	})
}

// restartAmongOut cuts d and e off, and from the API server (so they never
// see the record); once they are out (revision 2), c crashes, is cut off
// from a and b and from the API server, is joined to d and e, and
// restarts a second later.
func restartAmongOut(ss *shrinkSim) {
	ss.partition([]string{"a", "b", "c"}, []string{"d", "e"}, true)
	ss.apiDown["d"], ss.apiDown["e"] = true, true
	var crashed time.Time
	ss.after = chain(ss.after, func() {
		switch {
		case ss.rec.Rev == 2 && crashed.IsZero():
			crashed = ss.now
			ss.down["c"] = true
			ss.partition([]string{"a", "b"}, []string{"c"}, true)
			ss.partition([]string{"c"}, []string{"d", "e"}, false)
			ss.apiDown["c"], ss.apiDown["d"], ss.apiDown["e"] = true, true, true
		case !crashed.IsZero() && ss.now.Sub(crashed) == time.Second:
			ss.restart("c", false)
		}
	})
}

// TestLivenessShrinkUpgrade upgrades three speakers of the previous
// release (heartbeat version 2) one at a time while d is gone: the
// membership stays whole throughout, and no record is written while one
// of the live nodes cannot read it. Then d comes back and is readmitted.
func TestLivenessShrinkUpgrade(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	ss := newShrinkSim(t, names...)
	for _, n := range names {
		ss.restart(n, true)
	}
	ss.run(TieKeep + 3*time.Second)
	if q := ss.quorateNodes(); len(q) != 4 {
		t.Fatalf("quorate after settling: %v", q)
	}
	ss.down["d"] = true
	ss.gone = []string{"d"}
	ss.run(3 * time.Second)
	for _, n := range []string{"a", "b", "c"} {
		ss.down[n] = true
		ss.run(time.Second)
		ss.restart(n, false)
		ss.run(3 * time.Second)
		if q := ss.quorateNodes(); !slices.Equal(q, []string{"a", "b", "c"}) {
			t.Errorf("after upgrading %s: quorate %v, want a, b and c", n, q)
		}
		for _, o := range []string{"a", "b", "c"} {
			if got := ss.nodes[o].alive(ss.now); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Errorf("after upgrading %s: %s sees %v alive", n, o, got)
			}
		}
		if n != "c" && ss.rec.Rev != 0 {
			t.Errorf("record %+v written while a speaker of the previous release runs", ss.rec)
		}
	}
	ss.untilRev(2, 10*time.Second)
	ss.restart("d", false)
	ss.gone = nil
	ss.untilRev(4, 10*time.Second)
	ss.run(2 * time.Second)
	ss.checkSafe()
	if diff := cmp.Diff(MemberRecord{Rev: 4}, ss.rec, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("record after d came back (-want +got):\n%s", diff)
	}
	if q := ss.quorateNodes(); len(q) != 4 {
		t.Errorf("quorate after d came back: %v", q)
	}
}

// TestLivenessShrinkRandom runs random sequences of crashes, restarts,
// partitions, heals, delays, API server outages and changes of what the
// API server says is gone, on three and five nodes, checking after every
// simulated millisecond that no two quorate nodes miss each other and
// that no two count the tie-breaker: without voters, with named voters
// (and joins) after 2 s of settling, and with named voters from the
// start, the nodes waiting for the first record (first_record.go), the
// events beginning 100 ms in.
func TestLivenessShrinkRandom(t *testing.T) {
	for _, mode := range []struct{ named, first bool }{{false, false}, {true, false}, {true, true}} {
		named := mode.named
		total, joined := 0, 0
		for seed := range uint64(24) {
			n := []int{3, 5}[seed%2]
			t.Run(fmt.Sprintf("named voters %v, first record %v, seed %d, %d nodes", named, mode.first, seed, n), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 23))
				names := []string{"a", "b", "c", "d", "e"}[:n]
				ss := newShrinkSim(t, names...)
				ss.memberlist = true
				if named {
					ss.scale, ss.firstRecord = true, mode.first
					for _, x := range names {
						ss.nodes[x].scale, ss.nodes[x].firstRecord = true, mode.first
						if mode.first {
							ss.nodes[x].needRecord(ss.now)
						}
					}
				}
				if mode.first {
					ss.run(100 * time.Millisecond)
				} else {
					ss.run(2 * time.Second)
				}
				pick := func() string { return names[rng.IntN(len(names))] }
				for range 40 {
					x := pick()
					ev := rng.IntN(8)
					if named && rng.IntN(10) == 0 {
						ev = 8
					}
					if testing.Verbose() {
						t.Logf("%v: event %d on %s", ss.now.Sub(simStart), ev, x)
					}
					switch ev {
					case 0, 1, 2, 3, 4, 5:
						ss.randomEvent(rng, names, ev, x, func(n string) { ss.restart(n, false) })
						if ev == 5 && named {
							ss.meetAll(names)
						}
					case 6, 7:
						// The API server's verdict on x flips.
						ss.flipGone(x)
					case 8:
						// A new node joins x and a random part of the
						// others, and is cut off from the rest: with named
						// voters it votes only once a record names it.
						j := fmt.Sprintf("j%d", len(names))
						knownBy := []string{x}
						for _, o := range names {
							if o != x && rng.IntN(2) == 0 {
								knownBy = append(knownBy, o)
							}
						}
						ss.addLate(j, knownBy)
						ss.partition([]string{j}, without(names, knownBy), true)
						names = append(names, j)
						joined++
					}
					ss.run(time.Duration(100+rng.IntN(4000)) * time.Millisecond)
				}
				ss.checkSafe()
				total += ss.writes
			})
		}
		t.Logf("named voters %v, first record %v: %d records written over all runs, %d nodes joined", named, mode.first, total, joined)
		if total < 24 {
			t.Errorf("only %d records written: the runs hardly change the voter sets", total)
		}
	}
}

// flipGone flips what the API server says of x: gone, or not.
func (ss *shrinkSim) flipGone(x string) {
	if i := slices.Index(ss.gone, x); i >= 0 {
		ss.gone = slices.Delete(slices.Clone(ss.gone), i, i+1)
		return
	}
	ss.gone = append(slices.Clone(ss.gone), x)
	slices.Sort(ss.gone)
}

// meetAll makes every two live nodes of names that reach each other know
// each other, as memberlist does once a partition heals.
func (ss *shrinkSim) meetAll(names []string) {
	for _, a := range names {
		for _, b := range names {
			if a != b && !ss.down[a] && !ss.down[b] && !ss.cut[[2]string{a, b}] && !ss.cut[[2]string{b, a}] && !ss.nodes[a].known[b] {
				ss.nodes[a].join(ss.now, b)
			}
		}
	}
}

// TestLivenessChangeSides: c, cut off from a and b and joined to d and e in
// the same instant, still counts for a's lease (its last echo of a holds
// for QuorumLease) while d and e regain theirs with it, and a, which no
// longer hears c, never learns that d and e are back. RegainHoldDown is
// longer than QuorumLease, so d and e stay silent until a's lease ended:
// the views never overlap. (With a hold-down shorter than the lease they
// overlapped from 0.28 s to 0.54 s after the move.)
func TestLivenessChangeSides(t *testing.T) {
	s := newSim(t, "a", "b", "c", "d", "e")
	s.run(3 * time.Second)
	s.partition([]string{"a", "b", "c"}, []string{"d", "e"}, true)
	s.run(3 * time.Second)
	s.partition([]string{"a", "b"}, []string{"c"}, true)
	s.partition([]string{"c"}, []string{"d", "e"}, false)
	moved := s.now
	var first, last time.Time
	s.after = func() {
		if len(s.violations) > 0 {
			if first.IsZero() {
				first = s.now
			}
			last = s.now
			s.violations = nil
		}
	}
	s.run(3 * time.Second)
	if !first.IsZero() {
		t.Errorf("views overlap from %v to %v after the move", first.Sub(moved), last.Sub(moved))
	}
	for _, n := range []string{"c", "d", "e"} {
		if !s.quorate(n) {
			t.Errorf("%s not quorate 3 s after the move", n)
		}
	}
}
