package l2

import (
	"slices"
	"testing"
	"time"
)

// TestLivenessJoinsDuringSplit joins new nodes to one side of a split,
// which the other side never hears of, and checks safety every simulated
// millisecond. Each side then counts a different membership: without
// voters named in the record, joiners count towards their side's
// majority as soon as their side knows them, and both sides serve for as
// long as the split lasts. With named voters (every node of a small
// cluster, chosen ones in a larger one) a joiner votes only once a record
// names it, which only a quorate, settled node writes: nothing overlaps.
// After the heal the joiners meet the others and every node holds its
// lease.
func TestLivenessJoinsDuringSplit(t *testing.T) {
	tests := []struct {
		name string
		// nodes at the start, split into a and b; joiners join a, and a
		// node of b moves to a after they joined if move is set.
		nodes   int
		a       []string
		joiners []string
		move    string
		// apiDownB: b cannot reach the API server (so a may take the
		// tie-breaker).
		apiDownB bool
		// wantBoth: without voters both sides serve at some moment (the
		// gap this test guards).
		wantBoth bool
	}{
		{
			name: "three join the minority of five", nodes: 5, a: []string{"n00", "n01"},
			joiners: []string{"j0", "j1", "j2"}, wantBoth: true,
		},
		{
			name: "one joins one of three, with the tie-breaker", nodes: 3, a: []string{"n00"},
			joiners: []string{"j0"}, apiDownB: true, wantBoth: true,
		},
		{
			name: "one joins four of nine, with the tie-breaker", nodes: 9, a: []string{"n00", "n01", "n02", "n03"},
			joiners: []string{"j0"}, apiDownB: true, wantBoth: true,
		},
		{
			name: "three join the majority of five, then one of it moves", nodes: 5, a: []string{"n00", "n01", "n02"},
			joiners: []string{"j0", "j1", "j2"}, move: "n02",
		},
	}
	for _, tc := range tests {
		for _, voters := range []bool{true, false} {
			name := tc.name + ", named voters"
			if !voters {
				name = tc.name + ", no voters"
			}
			t.Run(name, func(t *testing.T) {
				names := nodeNames(tc.nodes)
				var ss *shrinkSim
				if voters {
					ss = newScaleSim(t, names, "")
					if len(ss.rec.Voters) == 0 {
						t.Fatalf("record %+v names no voters", ss.rec)
					}
				} else {
					ss = newShrinkSim(t, names...)
					ss.run(TieKeep + 3*time.Second)
				}
				a, b := slices.Clone(tc.a), without(names, tc.a)
				ss.partition(a, b, true)
				for _, n := range b {
					ss.apiDown[n] = tc.apiDownB
				}
				ss.run(2 * time.Second)
				for _, x := range tc.joiners {
					ss.addLate(x, a)
					ss.partition([]string{x}, b, true)
					a = append(a, x)
					ss.run(100 * time.Millisecond)
				}
				ss.run(3 * time.Second)
				if tc.move != "" {
					b = without(b, []string{tc.move})
					a = append(without(a, []string{tc.move}), tc.move)
					ss.partition(a, b, false)
					ss.partition(a, b, true)
					// The moved node hears a again: memberlist rejoins it.
					ss.meet(tc.move)
				}
				ss.run(3 * time.Second)
				overlap := len(ss.violations)
				if voters && overlap > 0 {
					t.Errorf("%d violations (pairs of nodes, each millisecond), first: %s", overlap, ss.violations[0])
				}
				if !voters {
					t.Logf("without voters: %d pair-milliseconds of overlap", overlap)
					if tc.wantBoth && overlap == 0 {
						t.Errorf("no overlap without voters: the scenario no longer shows the gap")
					}
				}
				if len(ss.double) > 0 {
					t.Errorf("two nodes counted the tie-breaker at once: %v", ss.double)
				}
				if !voters {
					return
				}
				// Heal: the joiners meet the others, and a record admits
				// them where every node votes.
				ss.partition(a, b, false)
				for _, n := range b {
					ss.apiDown[n] = false
				}
				ss.meetAll(ss.names)
				ss.run(12 * time.Second)
				ss.checkSafe()
				all := sorted(append(slices.Clone(names), tc.joiners...))
				if q := ss.quorateNodes(); !slices.Equal(sorted(q), all) {
					t.Errorf("quorate after the heal: %v, want %v (record %+v)", q, all, ss.rec)
				}
				if len(all) <= SmallCluster && !slices.Equal(ss.rec.Voters, all) {
					t.Errorf("record after the heal: %+v, want every node a voter", ss.rec)
				}
			})
		}
	}
}

// TestAdoptLearnsVoters: a node that follows a record learns the voters it
// names, so that it never writes a record without a voter only because
// memberlist has not told it of that node yet; a node it forgot on purpose
// (its Node deleted) stays forgotten.
func TestAdoptLearnsVoters(t *testing.T) {
	tests := []struct {
		name   string
		forgot bool
		want   []string
	}{
		{name: "unknown voter learned", want: []string{"a", "b", "x"}},
		{name: "forgotten voter not learned", forgot: true, want: []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveness("a", 1, simStart, defaultTiming(), true)
			l.join(simStart, "b")
			if tc.forgot {
				l.join(simStart, "x")
				l.forget(simStart, "x")
			}
			l.setRecord(simStart, MemberRecord{Rev: 3, Joint: true, Voters: []string{"a", "b"}, NextVoters: []string{"a", "b", "x"}})
			if got := l.knownNodes(); !slices.Equal(got, tc.want) {
				t.Errorf("known %v, want %v", got, tc.want)
			}
		})
	}
}
