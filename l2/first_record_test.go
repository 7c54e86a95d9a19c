package l2

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// newFirstRecordSim returns a shrinkSim of the nodes names started at once
// from no record, as the speaker starts them with its defaults (voters,
// the record and shrinking on): each reads the record before it sends
// anything, finds none, and waits for the first. Without first they hold
// leases without a record, as before.
func newFirstRecordSim(t *testing.T, names []string, first bool, broken brokenRule) *shrinkSim {
	ss := newShrinkSim(t, names...)
	ss.scale, ss.firstRecord, ss.broken = true, first, broken
	for _, x := range names {
		l := ss.nodes[x]
		l.scale, l.firstRecord, l.broken = true, first, broken
		l.needRecord(ss.now)
	}
	return ss
}

// leasesBeforeRecord fails the test at the first step at which a node
// holds its lease while the API server holds no record.
func (ss *shrinkSim) leasesBeforeRecord() *string {
	var first string
	ss.after = chain(ss.after, func() {
		if ss.rec.Rev == 0 && first == "" {
			if q := ss.quorateNodes(); len(q) > 0 {
				first = fmt.Sprintf("%v: %v quorate without a record", ss.now.Sub(simStart), q)
			}
		}
	})
	return &first
}

func TestNextRecordFirst(t *testing.T) {
	twelve := nodeNames(12)
	tests := []struct {
		name   string
		v      RecordView
		want   MemberRecord
		wantOK bool
	}{
		{
			name: "a small cluster: every known node, named",
			v:    RecordView{Known: []string{"a", "b", "c"}, Alive: []string{"a", "b"}, MaxVoters: MaxVoters, WritesFirst: true, SettledFor: -1},
			want: MemberRecord{Rev: 1, Voters: []string{"a", "b", "c"}}, wantOK: true,
		},
		{
			name: "a gone, dead node is out and no voter",
			v:    RecordView{Known: []string{"a", "b", "c"}, Alive: []string{"a", "b"}, Gone: []string{"c"}, MaxVoters: MaxVoters, WritesFirst: true, SettledFor: -1},
			want: MemberRecord{Rev: 1, Out: []string{"c"}, Voters: []string{"a", "b"}}, wantOK: true,
		},
		{
			name: "twelve nodes: five voters, alive ones first",
			v:    RecordView{Known: twelve, Alive: twelve[:6], MaxVoters: MaxVoters, WritesFirst: true, SettledFor: -1},
			want: MemberRecord{Rev: 1, Voters: sorted(byRank(twelve[:6])[:MaxVoters])}, wantOK: true,
		},
		{
			name: "not waiting, no lease: nothing",
			v:    RecordView{Known: []string{"a", "b", "c"}, Alive: []string{"a", "b"}, MaxVoters: MaxVoters, SettledFor: -1},
		},
		{
			name: "voters off: nothing",
			v:    RecordView{Known: []string{"a", "b", "c"}, Alive: []string{"a", "b"}, WritesFirst: true, SettledFor: -1},
		},
		{
			name: "a record exists: the usual rules (no lease, nothing)",
			v:    RecordView{Current: MemberRecord{Rev: 1, Voters: []string{"a"}}, Known: []string{"a", "b", "c"}, Alive: []string{"a", "b"}, MaxVoters: MaxVoters, WritesFirst: true, SettledFor: -1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NextRecord(tc.v)
			if ok != tc.wantOK {
				t.Errorf("NextRecord ok = %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("NextRecord (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWaitFirst: a node that waits for the first record holds no lease
// however many echo it and says so in its heartbeats; it may write the
// first record once it has waited for DeadAfter. It stops waiting while it
// hears a node that does not wait, and may then hold a lease as before;
// nodes that stopped waiting keep each other on that path when that node
// falls silent (the first record then comes by the joint steps). Under a
// record nobody waits.
func TestWaitFirst(t *testing.T) {
	s := newSim(t, "a", "b", "c")
	for _, x := range s.names {
		s.nodes[x].scale, s.nodes[x].firstRecord = true, true
		s.nodes[x].recompute(s.now)
	}
	s.run(DeadAfter - 10*time.Millisecond)
	if s.nodes["a"].recordView(s.now, nil).WritesFirst {
		t.Errorf("a may write the first record %v after it started to wait, want %v", s.now.Sub(simStart), DeadAfter)
	}
	// Cut off from its peers, a does not name the voters for all.
	s.partition([]string{"a"}, []string{"b", "c"}, true)
	s.run(DeadAfter)
	if s.nodes["a"].recordView(s.now, nil).WritesFirst {
		t.Errorf("a may write the first record hearing no peer")
	}
	s.partition([]string{"a"}, []string{"b", "c"}, false)
	s.run(time.Second)
	for _, x := range s.names {
		l := s.nodes[x]
		if _, q := l.lease(s.now); q || !l.waitFirst() || !l.heartbeat(s.now).WaitFirst || !l.recordView(s.now, nil).WritesFirst {
			t.Fatalf("%s: quorate %v, waits %v, says so %v, may write %v; want false, true, true, true", x, q, l.waitFirst(), l.heartbeat(s.now).WaitFirst, l.recordView(s.now, nil).WritesFirst)
		}
	}
	// c becomes a speaker that does not wait (an earlier build).
	s.nodes["c"].firstRecord = false
	s.run(3 * time.Second)
	for _, x := range s.names {
		if l := s.nodes[x]; l.waitFirst() || !s.quorate(x) || l.recordView(s.now, nil).WritesFirst {
			t.Errorf("beside c: %s waits %v, quorate %v, may write %v; want false, true, false", x, l.waitFirst(), s.quorate(x), l.recordView(s.now, nil).WritesFirst)
		}
	}
	s.down["c"] = true
	s.run(2 * time.Second)
	for _, x := range []string{"a", "b"} {
		if l := s.nodes[x]; l.waitFirst() || !s.quorate(x) {
			t.Errorf("c silent: %s waits %v, quorate %v; want false, true", x, l.waitFirst(), s.quorate(x))
		}
	}
	for _, x := range []string{"a", "b"} {
		s.nodes[x].setRecord(s.now, MemberRecord{Rev: 1, Voters: []string{"a", "b"}})
	}
	s.run(3 * time.Second)
	for _, x := range []string{"a", "b"} {
		if l := s.nodes[x]; l.waitFirst() || !s.quorate(x) {
			t.Errorf("under a record: %s waits %v, quorate %v; want false, true", x, l.waitFirst(), s.quorate(x))
		}
	}
	if len(s.violations) > 0 {
		t.Errorf("%d violations, first: %s", len(s.violations), s.violations[0])
	}
}

// TestLivenessFirstRecord starts clusters from no record as the speaker
// does by default, checking safety every simulated millisecond: no node
// holds a lease before the first record, which names the voters at once
// (revision 1, no joint step), and then every node holds its lease.
func TestLivenessFirstRecord(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		// setup runs at the start: a partition, a node of an earlier build.
		setup func(ss *shrinkSim)
		// heal, if set, runs after 3 s.
		heal func(ss *shrinkSim)
		// wantFirst: the first record is the one written without a lease
		// (revision 1, voters named, not joint).
		wantFirst bool
		// wantVoters is how many voters the record names in the end.
		wantVoters int
	}{
		{name: "three nodes", nodes: 3, wantFirst: true, wantVoters: 3},
		{name: "twelve nodes", nodes: 12, wantFirst: true, wantVoters: MaxVoters},
		{
			name: "twelve nodes, one of an earlier build: joint steps as before", nodes: 12,
			setup:      func(ss *shrinkSim) { ss.nodes["n05"].firstRecord = false },
			wantVoters: MaxVoters,
		},
		{
			name: "five nodes split 2|3 from the start, both reach the API server", nodes: 5,
			setup: func(ss *shrinkSim) { ss.partition(ss.names[:2], ss.names[2:], true) },
			heal: func(ss *shrinkSim) {
				ss.partition(ss.names[:2], ss.names[2:], false)
			},
			wantFirst: true, wantVoters: 5,
		},
		{
			name: "twelve nodes split 6|6 from the start, one side without the API server", nodes: 12,
			setup: func(ss *shrinkSim) {
				ss.partition(ss.names[:6], ss.names[6:], true)
				for _, x := range ss.names[6:] {
					ss.apiDown[x] = true
				}
			},
			heal: func(ss *shrinkSim) {
				ss.partition(ss.names[:6], ss.names[6:], false)
				for _, x := range ss.names[6:] {
					ss.apiDown[x] = false
				}
			},
			wantFirst: true, wantVoters: MaxVoters,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ss := newFirstRecordSim(t, nodeNames(tc.nodes), true, "")
			if tc.setup != nil {
				tc.setup(ss)
			}
			before := ss.leasesBeforeRecord()
			var first MemberRecord
			var firstAt time.Duration
			ss.after = chain(ss.after, func() {
				if first.Rev == 0 && ss.rec.Rev > 0 {
					first, firstAt = ss.rec.clone(), ss.now.Sub(simStart)
				}
			})
			ss.run(3 * time.Second)
			if tc.heal != nil {
				tc.heal(ss)
			}
			ss.run(10 * time.Second)
			ss.checkSafe()
			if *before != "" && tc.wantFirst {
				t.Errorf("a lease before the first record: %s", *before)
			}
			t.Logf("first record %+v at %v; in the end %+v after %d writes", first, firstAt, ss.rec, ss.writes)
			if isFirst := first.Rev == 1 && !first.Joint && len(first.Voters) > 0; isFirst != tc.wantFirst {
				t.Errorf("first record %+v: written without a lease %v, want %v", first, isFirst, tc.wantFirst)
			}
			if ss.rec.Joint || len(ss.rec.Voters) != tc.wantVoters {
				t.Errorf("record %+v, want %d voters, not joint", ss.rec, tc.wantVoters)
			}
			if q := ss.quorateNodes(); len(q) != tc.nodes {
				t.Errorf("quorate in the end: %v, want all %d", q, tc.nodes)
			}
		})
	}
}

// TestLivenessFirstRecordJoinsDuringSplit: a cluster of five starts split
// 2|3, three new nodes join the side of two at once, and the API server
// goes away once every node has read that there is no record, for 3 s: no
// record can be written. Waiting for the first record, nothing overlaps,
// and once the API server is back and the split heals every node holds
// its lease. Without waiting (leases under no record, as before), or with
// waiting nodes that hold leases and echo all the same, both sides serve:
// the gap that named voters close only once a record names them.
func TestLivenessFirstRecordJoinsDuringSplit(t *testing.T) {
	for _, tc := range []struct {
		first  bool
		broken brokenRule
	}{{true, ""}, {false, ""}, {true, brokenFirstWait}} {
		first := tc.first && tc.broken == ""
		t.Run(fmt.Sprintf("first record %v %s", tc.first, tc.broken), func(t *testing.T) {
			names := nodeNames(5)
			ss := newFirstRecordSim(t, names, tc.first, tc.broken)
			a, b := slices.Clone(names[:2]), slices.Clone(names[2:])
			ss.partition(a, b, true)
			for _, x := range []string{"j0", "j1", "j2"} {
				ss.addLate(x, a)
				ss.partition([]string{x}, b, true)
				a = append(a, x)
				ss.run(10 * time.Millisecond)
			}
			ss.run(120 * time.Millisecond)
			for _, x := range ss.names {
				if ss.nodes[x].silent() {
					t.Fatalf("%s has not read the record yet", x)
				}
				ss.apiDown[x] = true
			}
			ss.run(3 * time.Second)
			overlap := len(ss.violations)
			t.Logf("record %+v; %d pair-milliseconds of overlap", ss.rec, overlap)
			if !first {
				if overlap == 0 {
					t.Errorf("no overlap: the scenario no longer shows the gap")
				}
				return
			}
			ss.checkSafe()
			if q := ss.quorateNodes(); len(q) > 0 {
				t.Errorf("quorate without a record: %v", q)
			}
			for _, x := range ss.names {
				ss.apiDown[x] = false
			}
			ss.partition(a, b, false)
			ss.meetAll(ss.names)
			ss.run(12 * time.Second)
			ss.checkSafe()
			if q := ss.quorateNodes(); len(q) != len(ss.names) {
				t.Errorf("quorate after the heal: %v, want all %d (record %+v)", q, len(ss.names), ss.rec)
			}
		})
	}
}

// TestLivenessVotersDeletedNode: named voters die, too many for a
// majority, and their Nodes are deleted (the speakers forget them): the
// survivors count them no more, hold their leases again, and write the
// record that replaces them. Before, a deleted voter still counted, so
// nobody could hold a lease to write that record: every address stayed
// dark however many Nodes were deleted.
func TestLivenessVotersDeletedNode(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		dead  int // how many of the voters die
	}{
		{"three nodes, two dead", 3, 2},
		{"twelve nodes, three of five voters dead", 12, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			names := nodeNames(tc.nodes)
			ss, _ := newStartedVoterSim(t, names, 0)
			voters := slices.Clone(ss.rec.Voters)
			dead := voters[:tc.dead]
			live := without(names, dead)
			for _, x := range dead {
				ss.down[x] = true
			}
			ss.run(2 * time.Second)
			if q := ss.quorateNodes(); len(q) > 0 {
				t.Fatalf("quorate with %d of %d voters dead: %v", tc.dead, len(voters), q)
			}
			at := ss.now
			for _, x := range live {
				ss.nodes[x].forget(ss.now, dead...)
			}
			ss.names = live
			ss.run(6 * time.Second)
			ss.checkSafe()
			if q := ss.quorateNodes(); !slices.Equal(sorted(q), sorted(live)) {
				t.Errorf("%v after the deletion quorate: %v, want %v", ss.now.Sub(at), q, live)
			}
			want := min(len(live), MaxVoters)
			if ss.rec.Joint || len(ss.rec.Voters) != want || len(without(ss.rec.Voters, live)) > 0 {
				t.Errorf("record %+v, want %d live voters", ss.rec, want)
			}
		})
	}
}
