package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// Layer-2 targets of the issue: an unplanned failover within p50 1 s and
// p99 2 s, and two MACs answering at once for at most the 1 s handover. The
// tests log the figures and fail only well above them (failL2After,
// maxOverlap), to stay robust on a loaded machine.
const (
	failL2After = 4 * time.Second
	maxOverlap  = 1500 * time.Millisecond
	// probeEvery is the client's ARP probe interval: the resolution of
	// the failover figures.
	probeEvery = 20 * time.Millisecond
)

// TestSpeakerL2 runs three speakers with layer 2 only on one bridge with a
// client, and checks with arping, the client's neighbour table and a raw
// ARP probe who answers for the Services' addresses as speakers die, links
// fail, membership is partitioned, nodes are cordoned and endpoints move.
func TestSpeakerL2(t *testing.T) {
	start := time.Now()
	top := t // owns restarted speakers, which outlive subtests
	l := newL2Lab(t, 3)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "demo", nil)
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n)
	}
	t.Logf("speakers see each other after %v", l.waitMembers(t, 3))

	names := []string{"node1", "node2", "node3"}
	const nsvc = 6
	v4s, v6s := l.dualStack(t, "demo", "s", nsvc)
	// expected is the owner of a with every node alive and eligible.
	expected := func(a netip.Addr) *labNode { return l.byName(l2.Owner(a, names)) }

	t.Run("each address answers from exactly one node, spread over the nodes", func(t *testing.T) {
		owners := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		check := func(a netip.Addr) {
			defer wg.Done()
			want := expected(a)
			var macs []string
			d := poll(t, settle, a.String()+" answered by "+want.name, func() error {
				if a.Is4() {
					macs = l.arping(a)
					if len(macs) == 2 && macs[0] == macs[1] && l.name(macs[0]) == want.name {
						return nil
					}
				} else {
					macs = l.ndpAnswers(a)
					if len(macs) == 1 && l.name(macs[0]) == want.name {
						return nil
					}
				}
				return fmt.Errorf("replies from %v", l.names(macs))
			})
			mu.Lock()
			owners[want.name]++
			mu.Unlock()
			t.Logf("%s: answered by %s only (after %v)", a, want.name, d)
		}
		for _, a := range append(slices.Clone(v4s), v6s...) {
			wg.Add(1)
			go check(a)
		}
		wg.Wait()
		t.Logf("owners of %d addresses: %v", 2*nsvc, owners)
		if len(owners) < 2 {
			t.Errorf("ownership not spread: %v", owners)
		}
		msgs := l.e.events(t, "demo", "s0", "L2Owner")
		if len(msgs) == 0 {
			t.Errorf("no L2Owner Event on demo/s0")
		} else {
			t.Logf("Event: %s", msgs[0])
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	probe := l.startARPProbe(t, probeEvery, v4s...)
	var unplanned []time.Duration
	// fail takes each node in turn down with down and back up with up,
	// and measures when the client gets a reply from another MAC for each
	// address it owned.
	fail := func(t *testing.T, what string, down, up func(*labNode)) {
		for _, victim := range l.nodes {
			var owned []netip.Addr
			for _, a := range v4s {
				if expected(a) == victim {
					owned = append(owned, a)
				}
			}
			if len(owned) == 0 {
				continue
			}
			ds := l.failover(t, probe, owned, victim, down, up)
			for i, d := range ds {
				unplanned = append(unplanned, d)
				t.Logf("MEASURED: %s on %s: %s answered by another node after %v", what, victim.name, owned[i], d)
				if d > failL2After {
					t.Errorf("failover of %s took %v", owned[i], d)
				}
			}
		}
	}

	t.Run("killed speaker: another node answers", func(t *testing.T) {
		fail(t, "SIGKILL of the speaker", func(n *labNode) { n.speaker.stop(syscall.SIGKILL) },
			func(n *labNode) { l.startL2Speaker(t, top, n) })
	})
	t.Run("link down: another node answers", func(t *testing.T) {
		fail(t, "eth0 down", func(n *labNode) { l.ip(t, "-n", n.host.Netns, "link", "set", "eth0", "down") },
			func(n *labNode) { l.ip(t, "-n", n.host.Netns, "link", "set", "eth0", "up") })
	})
	if len(unplanned) > 0 {
		t.Logf("MEASURED: unplanned failover over %d addresses: p50 %v, p99 %v, max %v (target p50 <= 1s, p99 <= 2s)",
			len(unplanned), percentile(unplanned, 50), percentile(unplanned, 99), percentile(unplanned, 100))
	}

	t.Run("partitioned membership: never two MACs", func(t *testing.T) {
		victim := expected(v4s[0])
		at := time.Now()
		l.nft(t, victim, "add table inet berthe2e { chain in { type filter hook input priority 0; udp dport 7946 drop; tcp dport 7946 drop; }; chain out { type filter hook output priority 0; udp dport 7946 drop; tcp dport 7946 drop; }; }")
		poll(t, settle, victim.name+" loses quorum", func() error {
			if q := victim.speaker.gauge("berth_speaker_l2_quorate"); q != "0" {
				return fmt.Errorf("quorate %q", q)
			}
			return nil
		})
		// Sample for a few more seconds after the minority fell silent.
		time.Sleep(3 * time.Second)
		for _, a := range v4s {
			o, spans := probe.overlap(a, at)
			t.Logf("partition of %s: %s answered by %v; overlap %v", victim.name, a, l.spans(spans), o)
			// The bound: two MACs at most within a 1 s window.
			// The cut-off node falls silent when its lease ends (within
			// l2.QuorumLease), before the majority takes over (after
			// l2.DeadAfter): there should be no overlap at all.
			if o >= time.Second {
				t.Errorf("%s answered by two MACs at once for %v", a, o)
			}
			if expected(a) == victim {
				// The majority takes over after its failure detection;
				// on a loaded machine that can take longer than the
				// sampling above, so wait for it (bounded).
				var rs []arpReply
				err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
					rs = probe.replies(a, time.Now().Add(-time.Second))
					return len(rs) > 0 && l.name(rs[len(rs)-1].mac) != victim.name, nil
				})
				if err != nil {
					t.Errorf("%s: not taken over by the majority: last replies %v", a, rs)
				}
			}
		}
		l.nft(t, victim, "delete table inet berthe2e")
		t.Logf("partition healed: membership whole after %v", l.waitMembers(t, 3))
	})

	t.Run("cordon moves gracefully, uncordon moves back", func(t *testing.T) {
		a := v4s[0]
		victim := expected(a)
		old := hostMAC(t, victim.host)
		at := time.Now()
		l.setUnschedulable(victim, true)
		d := probe.waitMAC(t, a, at, old, "", settle)
		interim := ""
		for _, r := range probe.replies(a, at) {
			if r.mac != old {
				interim = r.mac
				break
			}
		}
		// The old owner stops once it sees the new one's announcement,
		// within the 1 s handover; from then on only the new one answers.
		poll(t, settle, "only "+l.name(interim)+" answering after the cordon", func() error { return probe.onlyMAC(a, interim) })
		o, spans := probe.overlap(a, at)
		t.Logf("MEASURED: cordon of %s: new owner answers %s after %v; both answered for %v (handover 1s): %v", victim.name, a, d, o, l.spans(spans))
		if o > maxOverlap {
			t.Errorf("handover overlap %v", o)
		}
		holdsFor(t, time.Second, "cordoned "+victim.name+" silent", func() error { return probe.onlyMAC(a, interim) })

		// Uncordoned, the node takes the address back, and the interim
		// owner stops answering just as the old one did.
		at = time.Now()
		l.setUnschedulable(victim, false)
		d = probe.waitMAC(t, a, at, "", old, settle)
		stopped := poll(t, settle, l.name(interim)+", the interim owner, no longer answering", func() error { return probe.onlyMAC(a, old) })
		o, spans = probe.overlap(a, at)
		t.Logf("MEASURED: uncordon of %s: it answers %s again after %v; %s stopped within %v; both answered for %v: %v",
			victim.name, a, d, l.name(interim), stopped, o, l.spans(spans))
		if o > maxOverlap {
			t.Errorf("handover overlap after the uncordon %v", o)
		}
		holdsFor(t, time.Second, "only "+victim.name+" answering after the uncordon", func() error { return probe.onlyMAC(a, old) })
	})

	t.Run("externalTrafficPolicy Local: the owner has a ready endpoint", func(t *testing.T) {
		n1, n2 := l.nodes[0], l.nodes[1]
		l.endpoints("demo", "local", map[*labNode]bool{n1: true, n2: false})
		l.e.service(t, "demo", "local", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		local, _ := split(l.e.waitAllocated(t, "demo", "local", 1))
		l.waitOnly(t, local, n1)
		l.endpoints("demo", "local", map[*labNode]bool{n2: true})
		l.waitOnly(t, local, n2)
		l.endpoints("demo", "local", map[*labNode]bool{})
		l.waitOnly(t, local, nil)
	})

	t.Run("all speakers restarted at once: one owner each", func(t *testing.T) {
		for _, n := range l.nodes {
			n.speaker.stop(syscall.SIGKILL)
		}
		at := time.Now()
		for _, n := range l.nodes {
			l.startL2Speaker(t, top, n)
		}
		l.waitMembers(t, 3)
		for _, a := range v4s {
			probe.waitMAC(t, a, time.Now(), "", hostMAC(t, expected(a).host), settle)
		}
		t.Logf("MEASURED: all speakers restarted: every address answered by its owner after %v", time.Since(at))
		var wg sync.WaitGroup
		for _, a := range append(slices.Clone(v4s), v6s...) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := expected(a)
				if a.Is6() {
					if got := l.names(l.ndpAnswers(a)); len(got) != 1 || got[0] != want.name {
						t.Errorf("%s: answered by %v, want %s only", a, got, want.name)
					}
					return
				}
				if macs := l.arping(a); len(macs) != 2 || macs[0] != macs[1] || l.name(macs[0]) != want.name {
					t.Errorf("%s: replies from %v, want two from %s", a, l.names(macs), want.name)
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("TestSpeakerL2 took %v", time.Since(start))
}

// TestSpeakerL2NoKey runs two speakers with layer 2, BGP and forwarding
// on, without the membership Secret, and a pool, a BerthL2Advertisement and a
// Service that ask them to answer on layer 2: they answer for nothing, say
// why in an Event on their Node, and BGP and forwarding serve another
// Service as usual. Once the Secret exists the same address is answered,
// so the silence was the missing key's doing and not the probe's.
func TestSpeakerL2NoKey(t *testing.T) {
	fl := newFwdLabWith(t, nil, "--forwarding=true", "--drift-check-interval=1s", "--cleanup-on-exit", "--l2", "--memberlist-port=7946")
	// The router is on the nodes' bridge: it asks who has the address.
	l := &l2Lab{speakerLab: fl.speakerLab, client: fl.router.Host, node: map[string]*labNode{}}
	for _, n := range fl.nodes {
		l.node[hostMAC(t, n.host)] = n
	}
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	fl.listen(t, "tcp", npWebHTTP)
	e := fl.e
	e.namespace(t, "nokey", nil)
	web := func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npWebHTTP}}
	}
	e.service(t, "nokey", "onl2", withAnnotation(v1alpha1.AnnotationPool, "l2"))
	e.service(t, "nokey", "onbgp", withAnnotation(v1alpha1.AnnotationPool, "main"), web)
	onL2 := e.waitAllocated(t, "nokey", "onl2", 1)[0]
	onBGP := e.waitAllocated(t, "nokey", "onbgp", 1)[0]

	for _, n := range fl.nodes {
		msgs := e.events(t, "", n.name, "L2Disabled")
		if len(msgs) == 0 {
			t.Fatalf("no L2Disabled Event on node %s", n.name)
		}
		t.Logf("Event on %s: %s", n.name, msgs[0])
		if !strings.Contains(msgs[0], memberlistSecret) {
			t.Errorf("Event does not name the Secret: %s", msgs[0])
		}
	}
	// BGP and forwarding are unaffected: the router learns the other
	// Service's address from both nodes and a client behind it reaches
	// the NodePort through it.
	waitNextHops(t, fl.router.Host, hostRoute(onBGP), fl.addrs(false), settle)
	waitAnswer(t, fl.get, onBGP, 80, npWebHTTP, settle)
	// By now both speakers have planned with the layer-2 Service in their
	// caches; nobody answers for it (arping asks twice over 2-3 s).
	if macs := l.arping(onL2); len(macs) != 0 {
		t.Fatalf("%s answered by %v without the membership key", onL2, l.names(macs))
	}

	// The control: with the Secret, layer 2 starts (the speakers poll for
	// it) and the same address is answered by one node.
	l.secret(memberlistSecret, map[string]string{"secretkey": "e2e-memberlist-key-0123456789abc"})
	var macs []string
	poll(t, 30*time.Second, "an answer for "+onL2.String()+" once the Secret exists", func() error {
		if macs = l.arping(onL2); len(macs) == 0 {
			return fmt.Errorf("no answer")
		}
		return nil
	})
	if names := slices.Compact(l.names(macs)); len(names) != 1 {
		t.Errorf("%s answered by %v, want one node", onL2, names)
	}
	waitAnswer(t, fl.get, onBGP, 80, npWebHTTP, settle)
}

// advertiseL2 creates a BerthL2Advertisement.
func (l *l2Lab) advertiseL2(name string, spec v1alpha1.BerthL2AdvertisementSpec) {
	l.t.Helper()
	a := &v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if _, err := l.e.berth.BerthV1alpha1().BerthL2Advertisements().Create(l.t.Context(), a, metav1.CreateOptions{}); err != nil {
		l.t.Fatalf("create BerthL2Advertisement %s: %v", name, err)
	}
}

func (l *l2Lab) byName(name string) *labNode {
	for _, n := range l.nodes {
		if n.name == name {
			return n
		}
	}
	l.t.Fatalf("no node %q", name)
	return nil
}

func (l *l2Lab) names(macs []string) []string {
	var out []string
	for _, m := range macs {
		out = append(out, l.name(m))
	}
	return out
}

// spans shows who answered when, relative to the first reply.
func (l *l2Lab) spans(spans map[string][2]time.Time) string {
	var first time.Time
	for _, s := range spans {
		if first.IsZero() || s[0].Before(first) {
			first = s[0]
		}
	}
	var out []string
	for mac, s := range spans {
		out = append(out, fmt.Sprintf("%s [%v..%v]", l.name(mac), s[0].Sub(first).Round(time.Millisecond), s[1].Sub(first).Round(time.Millisecond)))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// waitOnly waits until arping gets both replies from want only, or none
// when want is nil.
func (l *l2Lab) waitOnly(t testing.TB, a netip.Addr, want *labNode) {
	t.Helper()
	d := poll(t, settle, fmt.Sprintf("%s answered only by %v", a, want), func() error {
		macs := l.arping(a)
		if want == nil && len(macs) == 0 {
			return nil
		}
		if want != nil && len(macs) == 2 && macs[0] == macs[1] && l.name(macs[0]) == want.name {
			return nil
		}
		return fmt.Errorf("replies from %v", l.names(macs))
	})
	who := "nobody"
	if want != nil {
		who = want.name
	}
	t.Logf("%s answered by %s (after %v)", a, who, d)
}

// ip runs ip(8) in the root namespace.
func (l *l2Lab) ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}

// nft runs one nft command in n's namespace.
func (l *l2Lab) nft(t testing.TB, n *labNode, cmd string) {
	t.Helper()
	if _, err := n.host.Exec(t.Context(), "nft", cmd); err != nil {
		t.Fatal(err)
	}
}
