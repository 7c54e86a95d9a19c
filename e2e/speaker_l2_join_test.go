package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// TestSpeakerL2JoinDuringSplit starts three speakers (the record names
// all three voters, the default), splits node1 from node2 and node3, which
// also lose the API server, and starts a fourth speaker, node4, on node1's
// side. Without named voters node1 would count node4 and hold exactly half
// of four with the tie-breaker, while node2 and node3 hold two of three:
// both sides would answer (docs/layer2.md, "Nodes that join during a
// split"). With them node4 is no voter, node1 and node4 hold no lease, and
// node2 and node3 answer every address, never two MACs at once. After the
// heal node4 is named a voter and the four share the addresses.
func TestSpeakerL2JoinDuringSplit(t *testing.T) {
	l := newL2Lab(t, 4)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "join", nil)
	first := l.nodes[:3]
	names := []string{"node1", "node2", "node3"}
	for _, n := range first {
		l.startL2Speaker(t, t, n)
	}
	l.waitMembers(t, 3, first...)
	l.waitVoters(t, names)
	v4s, probe := l.servedAddrs(t, "join", names)
	at := time.Now()
	l.cutOff(t, l.nodes[1:3], []*labNode{l.nodes[0], l.nodes[3]})
	l.startL2Speaker(t, t, l.nodes[3])
	b := []string{"node2", "node3"}
	for _, a := range v4s {
		probe.waitMAC(t, a, at, "", hostMAC(t, l.byName(l2.Owner(a, b)).host), settle)
	}
	t.Logf("MEASURED: node1 cut off with node4 joining it: node2 and node3 answered every address %v after the cut", time.Since(at))
	// node4's memberlist reached one speaker, node1 (node2 and node3 drop
	// its packets), so node1 knows node4 now. (The members gauge counts
	// live speakers, and node1, without a lease, is not one.)
	poll(t, settle, "node4 met node1", func() error {
		if !l.nodes[3].speaker.loggedLine("Joined speakers", "answered=1") {
			return fmt.Errorf("node4 has not joined node1")
		}
		return nil
	})
	side := []*labNode{l.nodes[0], l.nodes[3]}
	holdsFor(t, 3*time.Second, "node1 and node4 without a lease", func() error {
		if q := l.quorate(side); q != 0 {
			return fmt.Errorf("%d of node1 and node4 quorate", q)
		}
		return nil
	})
	probe.noOverlap(t, l, v4s, at)

	for _, n := range l.nodes[1:3] {
		l.nft(t, n, "delete table inet berthe2e")
	}
	healed := time.Now()
	all := append(slices.Clone(names), "node4")
	d := l.waitVoters(t, all)
	t.Logf("MEASURED: node4 named a voter %v after the heal", d)
	l.waitMembers(t, 4)
	for _, a := range v4s {
		probe.waitMAC(t, a, healed, "", hostMAC(t, l.byName(l2.Owner(a, all)).host), settle)
	}
	// From the heal on (noOverlap spans each MAC's first to last answer,
	// so the window must not include node1's answers before the cut).
	probe.noOverlap(t, l, v4s, healed)
}

// waitVoters waits until the membership record names exactly voters, not
// in a joint step, and returns how long that took.
func (l *l2Lab) waitVoters(t testing.TB, voters []string) time.Duration {
	t.Helper()
	return poll(t, 30*time.Second, fmt.Sprintf("the record naming the voters %v", voters), func() error {
		rec, err := l.membersRecord(t)
		if err != nil {
			return err
		}
		if rec.Joint || !slices.Equal(rec.Voters, voters) {
			return fmt.Errorf("record %+v", rec)
		}
		return nil
	})
}
