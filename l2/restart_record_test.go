package l2

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeKnown writes, for node n of a shrinkSim that keeps the known list,
// what NextKnown says, as the speaker's record loop does: only while n
// leads its side (holds its lease and comes first of the live nodes in its
// view), every Node existing.
func (ss *shrinkSim) writeKnown(n string) {
	if !ss.keepKnown || !ss.quorate(n) || ss.nodes[n].alive(ss.now)[0] != n {
		return
	}
	if next, ok := NextKnown(ss.known, ss.nodes[n].knownNodes(), ss.names); ok {
		ss.known = next
	}
}

// TestLivenessSideRestartsDuringSplit: every speaker on one side of a
// split restarts before the split heals, so none of them meets a node of
// the other side. Here n00 and n03 go down as they are cut off from the
// others and restart a second later. Without the known list in the
// record they count a membership of two, which they are, and hold leases
// beside the other side, which holds them with three of five, or two of
// four and the tie-breaker. With the list they learn every node from the
// record before they can hold a lease: the other side serves alone (with
// four nodes, the holder of the tie-breaker), and after the heal everyone
// does. Overlap is counted in
// pairs of nodes times milliseconds.
func TestLivenessSideRestartsDuringSplit(t *testing.T) {
	tests := []struct {
		name      string
		nodes     int
		keepKnown bool
	}{
		{"four nodes, known list", 4, true},
		{"five nodes, known list", 5, true},
		{"four nodes, no known list", 4, false},
		{"five nodes, no known list", 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newShrinkSim(t, nodeNames(tt.nodes)...)
			ss.memberlist, ss.keepKnown = true, tt.keepKnown
			ss.run(TieKeep + 3*time.Second)
			if tt.keepKnown {
				if diff := cmp.Diff(ss.names, ss.known); diff != "" {
					t.Fatalf("known list stored before the split (-want +got):\n%s", diff)
				}
			}
			side := []string{"n00", "n03"}
			other := without(ss.names, side)
			ss.partition(side, other, true)
			ss.down["n00"], ss.down["n03"] = true, true
			ss.run(time.Second)
			ss.restart("n00", false)
			ss.restart("n03", false)
			served := 0
			ss.after = chain(ss.after, func() {
				if slices.ContainsFunc(side, ss.quorate) {
					served++
				}
			})
			ss.run(5 * time.Second)
			q := ss.quorateNodes()
			t.Logf("%d pair-milliseconds of overlap; restarted side quorate for %d ms; quorate at the end %v; n00 knows %v",
				len(ss.violations), served, q, ss.nodes["n00"].knownNodes())
			if !tt.keepKnown {
				if len(ss.violations) == 0 {
					t.Error("no overlap without the known list: the scenario no longer shows what the list prevents")
				}
				return
			}
			ss.checkSafe()
			if served > 0 {
				t.Errorf("the restarted side held a lease for %d ms of the split", served)
			}
			// With four nodes (2 | 2) only the holder of the tie-breaker.
			if tie := tt.nodes%2 == 0 && len(q) == 1 && slices.Contains(other, q[0]); !tie && !slices.Equal(q, other) {
				t.Errorf("quorate at the end of the split %v, want %v (one of them with four nodes)", q, other)
			}
			ss.partition(side, other, false)
			ss.run(3 * time.Second)
			ss.checkSafe()
			if q := ss.quorateNodes(); !slices.Equal(q, ss.names) {
				t.Errorf("quorate 3 s after the heal: %v", q)
			}
		})
	}
}

// TestLivenessSideRestartSplitRandom runs random sequences of crashes (of
// a node, and during a split of every node on its side), restarts (of one
// crashed node, or of all of them at once: a whole side), splits into two
// random sides, heals,
// API server outages and delays, on three to six nodes that keep the
// known list with the record, restart as the speaker does (silent until
// they read the record, learning its known list first) and meet the
// others as memberlist makes them; after every simulated millisecond no
// two quorate nodes miss each other (events 20 ms to 1.5 s apart; 300
// seeds passed once; 24 run). The
// first 8 sequences without the list must overlap somewhere, or they do
// not test it.
func TestLivenessSideRestartSplitRandom(t *testing.T) {
	unsafe := 0
	for _, keep := range []bool{true, false} {
		seeds := uint64(24)
		if !keep {
			seeds = 8
		}
		for seed := range seeds {
			n := 3 + int(seed%4)
			t.Run(fmt.Sprintf("known list %v, seed %d, %d nodes", keep, seed, n), func(t *testing.T) {
				ss := sideRestartRun(t, seed, n, keep)
				if !keep {
					unsafe += len(ss.violations)
					return
				}
				ss.checkSafe()
			})
		}
	}
	t.Logf("without the known list: %d pair-milliseconds of overlap over all seeds", unsafe)
	if unsafe == 0 {
		t.Error("no overlap without the known list: the sequences do not test it")
	}
}

// sideRestartRun runs one sequence of TestLivenessSideRestartSplitRandom.
func sideRestartRun(t *testing.T, seed uint64, n int, keep bool) *shrinkSim {
	rng := rand.New(rand.NewPCG(seed, 31))
	names := nodeNames(n)
	ss := newShrinkSim(t, names...)
	ss.memberlist, ss.keepKnown = true, keep
	ss.run(2 * time.Second)
	for range 30 {
		x := names[rng.IntN(n)]
		ev := rng.IntN(8)
		if testing.Verbose() {
			t.Logf("%v: event %d on %s (down %v, api down %v, known %v)", ss.now.Sub(simStart), ev, x, ss.down, ss.apiDown, ss.nodes[x].knownNodes())
		}
		switch ev {
		case 0:
			// x, and during a split every node on its side.
			split := slices.ContainsFunc(names, func(o string) bool { return ss.cut[[2]string{x, o}] })
			for _, o := range names {
				if o == x || split && !ss.cut[[2]string{x, o}] {
					ss.down[o] = true
				}
			}
		case 1:
			// Restart every crashed node at once: a whole side.
			for _, o := range names {
				if ss.down[o] {
					ss.restart(o, false)
				}
			}
		case 2:
			for _, o := range names {
				if ss.down[o] {
					ss.restart(o, false)
					break
				}
			}
		default:
			ss.netEvent(rng, x, ev)
		}
		// As fast as 20 ms apart, as in TestLivenessRestartSplitRandom.
		ss.run(time.Duration(20+rng.IntN(1500)) * time.Millisecond)
	}
	return ss
}

// netEvent applies event ev (3 to 7) of a random sequence to the network
// and the API server: a split into two random sides (3, 4), a heal (5),
// an API server outage of x or its end (6), a new delay of x's messages
// (7). TestLivenessRestartSplitRandom uses it too.
func (ts *tieSim) netEvent(rng *rand.Rand, x string, ev int) {
	switch ev {
	case 3, 4:
		ts.partition(ts.names, ts.names, false)
		var a []string
		for _, o := range ts.names {
			if rng.IntN(2) == 0 {
				a = append(a, o)
			}
		}
		ts.partition(a, without(ts.names, a), true)
	case 5:
		ts.partition(ts.names, ts.names, false)
	case 6:
		ts.apiDown[x] = !ts.apiDown[x]
	case 7:
		ts.delay[x] = time.Duration(rng.IntN(80)) * time.Millisecond
	}
}

// TestNextKnown: the list stored grows by the nodes a speaker knows and
// loses those whose Node was deleted; without the Nodes it stays.
func TestNextKnown(t *testing.T) {
	tests := []struct {
		name                 string
		stored, known, nodes []string
		want                 []string
		changed              bool
	}{
		{"first write", nil, []string{"b", "a"}, []string{"a", "b", "c"}, []string{"a", "b"}, true},
		{"nothing new", []string{"a", "b"}, []string{"b"}, []string{"a", "b"}, []string{"a", "b"}, false},
		{"joined", []string{"a", "c"}, []string{"a", "b"}, []string{"a", "b", "c"}, []string{"a", "b", "c"}, true},
		{"Node deleted", []string{"a", "b", "c"}, []string{"a", "b", "c"}, []string{"a", "b"}, []string{"a", "b"}, true},
		{"known, no Node yet", []string{"a"}, []string{"a", "d"}, []string{"a"}, []string{"a"}, false},
		{"Nodes not read", []string{"a", "b"}, []string{"a", "b", "c"}, nil, []string{"a", "b"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := NextKnown(tc.stored, tc.known, tc.nodes)
			if diff := cmp.Diff(tc.want, got); diff != "" || changed != tc.changed {
				t.Errorf("changed %v, want %v; list (-want +got):\n%s", changed, tc.changed, diff)
			}
		})
	}
}
