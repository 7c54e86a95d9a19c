package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// cutMembership drops n's membership traffic (port 7946) both ways.
const cutMembership = "add table inet berthe2e { chain in { type filter hook input priority 0; udp dport 7946 drop; tcp dport 7946 drop; }; chain out { type filter hook output priority 0; udp dport 7946 drop; tcp dport 7946 drop; }; }"

// TestSpeakerL2TwoNodes runs two speakers with the tie-breaker Lease (the
// default, under the chart's RBAC) and checks that one of them serves every
// address when the other is cut off or dies while the API server is
// reachable (also when the dead node held the Lease: the survivor waits
// out its hold), and that, with the API server down too, the survivor
// falls silent rather than risk two answers, and serves once it is back.
func TestSpeakerL2TwoNodes(t *testing.T) {
	top := t
	l := newL2Lab(t, 2)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "duo", nil)
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n)
	}
	l.waitMembers(t, 2)
	names := []string{"node1", "node2"}
	v4s, probe := l.answeredAddrs(t, "duo", "s", 4, names)
	answeredBy := func() (string, error) { return probe.answeredBy(l, v4s) }
	silent := func() error { return probe.silent(l, v4s) }
	noOverlap := func(t *testing.T, from time.Time) { probe.noOverlap(t, l, v4s, from) }

	// winner is the node that served alone through the tie-breaker in
	// the partition below; it holds the Lease for l2.TieKeep after.
	var winner string
	t.Run("partitioned, API server up: one node serves every address", func(t *testing.T) {
		at := time.Now()
		l.nft(t, l.nodes[1], cutMembership)
		// Right after the cut both still hold their leases and may
		// answer as before; the one to serve is the node that is quorate
		// alone (through the tie-breaker) and answers every address.
		d := poll(t, settle, "the one quorate node answering every address", func() (err error) {
			if winner, err = answeredBy(); err != nil {
				return err
			}
			if q := l.quorate(l.nodes); q != 1 {
				return fmt.Errorf("%s answers every address, but %d nodes are quorate", winner, q)
			}
			if l.quorate([]*labNode{l.byName(winner)}) != 1 {
				return fmt.Errorf("%s answers every address, but the other node is the quorate one", winner)
			}
			return nil
		})
		t.Logf("MEASURED: two nodes partitioned: %s answered every address %v after the cut", winner, d)
		time.Sleep(2 * time.Second)
		if err := probe.onlyBy(l, v4s, winner); err != nil {
			t.Errorf("2 s later: %v", err)
		}
		noOverlap(t, at)
		if q := l.quorate(l.nodes); q != 1 {
			t.Errorf("%d nodes quorate, want 1", q)
		}
		l.nft(t, l.nodes[1], "delete table inet berthe2e")
		l.waitMembers(t, 2)
	})

	t.Run("tie-breaker holder killed, API server up: the survivor serves after the hold", func(t *testing.T) {
		// Both serve their own again after the heal; the winner keeps the
		// Lease for l2.TieKeep after it last needed it.
		for _, b := range v4s {
			probe.waitMAC(t, b, time.Now(), "", hostMAC(t, l.byName(l2.Owner(b, names)).host), settle)
		}
		lease, err := l.e.kube.CoordinationV1().Leases(berthNS).Get(t.Context(), "berth-l2-tiebreak", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if h := ptr.Deref(lease.Spec.HolderIdentity, ""); winner == "" || h != winner {
			t.Fatalf("the tie-breaker held by %q, want the partition's winner %q", h, winner)
		}
		victim := l.byName(winner)
		survivor := l.nodes[0]
		if survivor == victim {
			survivor = l.nodes[1]
		}
		victim.speaker.stop(syscall.SIGKILL)
		at := time.Now()
		// The survivor waits for the Lease to stay unchanged for
		// l2.TieDuration from its first read, then holds down.
		d := poll(t, 10*time.Second, "the survivor answering every address", func() error { return probe.onlyBy(l, v4s, survivor.name) })
		t.Logf("MEASURED: two nodes, the tie-breaker's holder %s killed, API server up: %s answered every address after %v", victim.name, survivor.name, d)
		noOverlap(t, at)
		l.startL2Speaker(t, top, victim)
		l.waitMembers(t, 2)
	})

	t.Run("owner killed, API server up: the survivor serves", func(t *testing.T) {
		a := v4s[0]
		victim := l.byName(l2.Owner(a, names))
		survivor := l.nodes[0]
		if survivor == victim {
			survivor = l.nodes[1]
		}
		// Both serve their own again after the restart, and the Lease,
		// which the restarted speaker may have taken when it started
		// alone, is released (l2.TieKeep): this measures a kill of a node
		// that does not hold it.
		for _, b := range v4s {
			probe.waitMAC(t, b, time.Now(), "", hostMAC(t, l.byName(l2.Owner(b, names)).host), settle)
		}
		time.Sleep(l2.TieKeep + 2*time.Second)
		victim.speaker.stop(syscall.SIGKILL)
		at := time.Now()
		d := probe.waitMAC(t, a, at, "", hostMAC(t, survivor.host), failL2After)
		t.Logf("MEASURED: two nodes, owner's speaker killed, API server up: %s answered by %s after %v", a, survivor.name, d)
		poll(t, settle, "the survivor answering every address", func() error { return probe.onlyBy(l, v4s, survivor.name) })
		noOverlap(t, at)
		l.startL2Speaker(t, top, victim)
		l.waitMembers(t, 2)
	})

	t.Run("owner killed, API server down: dark, then served when it is back", func(t *testing.T) {
		for _, b := range v4s {
			probe.waitMAC(t, b, time.Now(), "", hostMAC(t, l.byName(l2.Owner(b, names)).host), settle)
		}
		// Let any hold of the tie-breaker from the subtests above lapse
		// (l2.TieKeep, then a release).
		time.Sleep(l2.TieKeep + 2*time.Second)
		a := v4s[0]
		victim := l.byName(l2.Owner(a, names))
		survivor := l.nodes[0]
		if survivor == victim {
			survivor = l.nodes[1]
		}
		resume, err := l.e.cp.PauseAPIServer()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(resume)
		victim.speaker.stop(syscall.SIGKILL)
		at := time.Now()
		dark := poll(t, settle, "every address unanswered", silent)
		t.Logf("MEASURED: two nodes, API server paused, owner's speaker killed: dark after %v", dark)
		holdsFor(t, 3*time.Second, "dark without the peer and the API server", silent)
		noOverlap(t, at)
		resume()
		back := time.Now()
		d := poll(t, settle, "the survivor answering every address", func() error { return probe.onlyBy(l, v4s, survivor.name) })
		t.Logf("MEASURED: %s answered every address %v after the API server resumed", survivor.name, d)
		noOverlap(t, back)
	})
}

// answeredBy returns the one node that answered every address in addrs in
// the last 300 ms, or an error.
func (p *arpProbe) answeredBy(l *l2Lab, addrs []netip.Addr) (string, error) {
	who := ""
	for _, a := range addrs {
		rs := p.replies(a, time.Now().Add(-300*time.Millisecond))
		if len(rs) == 0 {
			return "", fmt.Errorf("%s unanswered", a)
		}
		for _, r := range rs {
			if n := l.name(r.mac); who == "" {
				who = n
			} else if n != who {
				return "", fmt.Errorf("%s answered by %s and %s", a, who, n)
			}
		}
	}
	return who, nil
}

// onlyBy fails unless node who answered every address in addrs, alone, in
// the last 300 ms.
func (p *arpProbe) onlyBy(l *l2Lab, addrs []netip.Addr, who string) error {
	w, err := p.answeredBy(l, addrs)
	if err != nil {
		return err
	}
	if w != who {
		return fmt.Errorf("answered by %s, want %s", w, who)
	}
	return nil
}

// silent fails if any address in addrs was answered in the last 300 ms.
func (p *arpProbe) silent(l *l2Lab, addrs []netip.Addr) error {
	for _, b := range addrs {
		if rs := p.replies(b, time.Now().Add(-300*time.Millisecond)); len(rs) > 0 {
			return fmt.Errorf("%s answered by %s", b, l.name(rs[len(rs)-1].mac))
		}
	}
	return nil
}

// noOverlap fails t if two MACs answered an address in addrs at once since
// from.
func (p *arpProbe) noOverlap(t testing.TB, l *l2Lab, addrs []netip.Addr, from time.Time) {
	t.Helper()
	for _, a := range addrs {
		if o, spans := p.overlap(a, from); o > 0 {
			t.Errorf("%s answered by two MACs at once for %v: %v", a, o, l.spans(spans))
		}
	}
}

// quorate counts the nodes whose speaker says it is quorate.
func (l *l2Lab) quorate(nodes []*labNode) int {
	n := 0
	for _, nd := range nodes {
		if nd.speaker.gauge("berth_speaker_l2_quorate") == "1" {
			n++
		}
	}
	return n
}

// TestSpeakerL2EvenSplit splits four speakers 2+2 with the API server
// reachable from one half only: one node of that half serves every
// address, the other half nothing, never two MACs at once.
func TestSpeakerL2EvenSplit(t *testing.T) {
	l := newL2Lab(t, 4)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "split", nil)
	var names []string
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n)
		names = append(names, n.name)
	}
	l.waitMembers(t, 4)
	v4s, probe := l.servedAddrs(t, "split", names)
	at := time.Now()
	l.cutOff(t, l.nodes[2:], l.nodes[:2])
	// A node of the cut-off half that held the Lease at the cut serves
	// until its hold runs out (at most 1.8 s after its last renewal);
	// the other half takes the Lease over 2 s after it first read it.
	var winner string
	d := poll(t, settle, "node1 or node2 answering every address", func() (err error) {
		winner, err = probe.answeredBy(l, v4s)
		if err == nil && winner != "node1" && winner != "node2" {
			err = fmt.Errorf("answered by %s", winner)
		}
		return err
	})
	t.Logf("MEASURED: 2+2 split, API server reachable from node1 and node2: %s answered every address %v after the cut", winner, d)
	for _, n := range l.nodes {
		if n.speaker.logged("Tie-breaker changed") {
			t.Logf("%s held the tie-breaker at some point", n.name)
		}
	}
	holdsFor(t, 2*time.Second, "only "+winner+" answering", func() error { return probe.onlyBy(l, v4s, winner) })
	probe.noOverlap(t, l, v4s, at)
	if q := l.quorate(l.nodes); q != 1 {
		t.Errorf("%d nodes quorate, want 1", q)
	}
}

// servedAddrs creates six dual-stack Services in namespace ns, waits until
// each IPv4 address is answered by its owner among names, lets the
// tie-breaker raced for at start be released (l2.TieKeep), and returns
// the IPv4 addresses with the probe that watches them.
func (l *l2Lab) servedAddrs(t *testing.T, ns string, names []string) ([]netip.Addr, *arpProbe) {
	t.Helper()
	v4s, probe := l.answeredAddrs(t, ns, "s", 6, names)
	time.Sleep(l2.TieKeep + 2*time.Second)
	return v4s, probe
}

// cutOff cuts the nodes on off from the membership traffic of the nodes
// from, and from the API server (an nftables table berthe2e on each).
func (l *l2Lab) cutOff(t *testing.T, on, from []*labNode) {
	t.Helper()
	api, err := netip.ParseAddrPort(strings.TrimPrefix(l.e.cp.URL(), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	for _, n := range from {
		peers = append(peers, n.host.IPv4.String())
	}
	set := strings.Join(peers, ", ")
	for _, n := range on {
		l.nft(t, n, fmt.Sprintf("add table inet berthe2e { chain in { type filter hook input priority 0; udp dport 7946 ip saddr { %[1]s } drop; tcp dport 7946 ip saddr { %[1]s } drop; tcp sport %[2]d drop; }; chain out { type filter hook output priority 0; udp dport 7946 ip daddr { %[1]s } drop; tcp dport 7946 ip daddr { %[1]s } drop; tcp dport %[2]d drop; }; }", set, api.Port()))
	}
}
