package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/speaker"
)

// TestSpeakerBGPDegradesPerPart runs a speaker with BGP and layer 2 and a
// healthy session with FRR, then adds a BerthBGPPeer that passes admission but
// that the speaker rejects (eBGP multihop on an iBGP session) and one whose
// password Secret does not exist: a Service created afterwards still
// reaches the router over the healthy session, which never flaps, and
// layer 2 answers for it; each broken peer says why in its node's entry
// (the Configured condition) and in an Event attached to it.
func TestSpeakerBGPDegradesPerPart(t *testing.T) {
	l := newL2Lab(t, 1)
	n1 := l.nodes[0]
	r1 := frr.Start(t, l.lab, "r1", frr.Config{ASN: routerASN, Neighbors: l.neighbors(nodeASN, "")})
	l.allowSecrets("bgp-missing")
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.bgpPeer("good", r1.Host.IPv4, routerASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.HoldTimeSeconds, s.KeepaliveTimeSeconds = ptr.To[int32](3), ptr.To[int32](1)
	})
	l.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	l.e.namespace(t, "demo", nil)
	l.startL2Speaker(t, t, n1, "--bgp=true")
	l.waitMembers(t, 1)
	waitSessions(t, r1, []netip.Addr{n1.host.IPv4})
	before, _ := l.dualStack(t, "demo", "before", 1)
	waitAnnounced(t, l, r1, before[0], n1)
	established := establishedCounts(t, r1, l.speakerLab)

	// Both pass admission; the speaker cannot configure either.
	l.bgpPeer("multihop", r1.Host.IPv6, nodeASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) { s.EBGPMultiHop = ptr.To[int32](2) })
	unused := l.lab.Prefix4.Addr().As4()
	unused[3] = 250
	l.bgpPeer("locked", netip.AddrFrom4(unused), routerASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp-missing"}
	})
	poll(t, settle, "node1's entries of the broken peers say why", func() error {
		return errors.Join(
			peerEntryHas(t, l.speakerLab, "multihop", n1.name, metav1.ConditionFalse, "iBGP"),
			peerEntryHas(t, l.speakerLab, "locked", n1.name, metav1.ConditionFalse, `password Secret "bgp-missing"`),
		)
	})
	checkPeerEvent(t, l.speakerLab, "multihop", "iBGP")
	checkPeerEvent(t, l.speakerLab, "locked", `password Secret "bgp-missing"`)

	after, _ := l.dualStack(t, "demo", "after", 1)
	waitAnnounced(t, l, r1, after[0], n1)
	if err := peerEntryHas(t, l.speakerLab, "good", n1.name, metav1.ConditionTrue, ""); err != nil {
		t.Errorf("peer good: %v", err)
	}
	if now := establishedCounts(t, r1, l.speakerLab); !slices.Equal(now, established) {
		t.Errorf("r1's established counts went from %v to %v: the healthy session flapped", established, now)
	}
	if st, _ := r1.NeighborState(t, n1.host.IPv4); st != "Established" {
		t.Errorf("the healthy session is %q", st)
	}
}

// waitAnnounced waits until r has a route for addr via n and n answers ARP
// for it.
func waitAnnounced(t *testing.T, l *l2Lab, r *frr.Router, addr netip.Addr, n *labNode) {
	t.Helper()
	waitNextHops(t, r.Host, hostRoute(addr), []netip.Addr{n.host.IPv4}, settle)
	poll(t, settle, addr.String()+" answered on layer 2 by "+n.name, func() error {
		macs := l.arping(addr)
		if len(macs) == 0 || l.name(macs[0]) != n.name {
			return fmt.Errorf("replies from %v", l.names(macs))
		}
		return nil
	})
}

// peerEntryHas checks node's session with BerthBGPPeer peer in its
// BerthNodeStatus: its Configured condition has status, and its message
// and lastError contain problem.
func peerEntryHas(t *testing.T, sl *speakerLab, peer, node string, status metav1.ConditionStatus, problem string) error {
	p, err := sl.e.berth.BerthV1alpha1().BerthBGPPeers().Get(t.Context(), peer, metav1.GetOptions{})
	if err != nil {
		return err
	}
	e, err := nodeSession(t, sl, node, peer)
	if err != nil {
		return err
	}
	c := meta.FindStatusCondition(e.Conditions, speaker.ConditionConfigured)
	switch {
	case c == nil:
		return fmt.Errorf("peer %s: node %s's session has no Configured condition: %+v", peer, node, e)
	case c.Status != status || !strings.Contains(c.Message, problem) || !strings.Contains(e.LastError, problem):
		return fmt.Errorf("peer %s: node %s's Configured %s (%s), lastError %q; want %s naming %q", peer, node, c.Status, c.Message, e.LastError, status, problem)
	case c.ObservedGeneration != p.Generation:
		return fmt.Errorf("peer %s: node %s's Configured observed generation %d, the peer's is %d", peer, node, c.ObservedGeneration, p.Generation)
	}
	return nil
}

// nodeSession returns node's session with peer from its BerthNodeStatus.
func nodeSession(t testing.TB, sl *speakerLab, node, peer string) (*v1alpha1.BerthBGPSession, error) {
	ns, err := sl.e.berth.BerthV1alpha1().BerthNodeStatuses().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for i, s := range ns.Status.Sessions {
		if s.Peer == peer {
			return &ns.Status.Sessions[i], nil
		}
	}
	return nil, fmt.Errorf("node %s's status has no session with %s: %+v", node, peer, ns.Status.Sessions)
}

// checkPeerEvent checks that a SpeakerConfigProblem Event naming problem
// is attached to BerthBGPPeer peer, by its UID.
func checkPeerEvent(t *testing.T, sl *speakerLab, peer, problem string) {
	t.Helper()
	p, err := sl.e.berth.BerthV1alpha1().BerthBGPPeers().Get(t.Context(), peer, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, settle, "an Event on BerthBGPPeer "+peer+" naming "+problem, func() error {
		list, err := sl.e.kube.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + peer + ",reason=SpeakerConfigProblem",
		})
		if err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if strings.Contains(ev.Message, problem) && ev.InvolvedObject.UID == p.UID && ev.InvolvedObject.Kind == "BerthBGPPeer" {
				return nil
			}
			seen = append(seen, fmt.Sprintf("%s (uid %q)", ev.Message, ev.InvolvedObject.UID))
		}
		return fmt.Errorf("Events %v; want one naming %q with uid %s", seen, problem, p.UID)
	})
}

// TestSpeakerL2WithoutAPIServer checks that layer 2 keeps working while
// the API server is away (docs/layer2.md): with the API server paused for
// longer than the password Secret cache, so that each sync fails to read
// a BerthBGPPeer's Secret, a node whose speaker dies is still replaced at once
// on ARP (three nodes: the other two keep the membership's quorum). The
// survivors' BGP sessions are kept meanwhile.
func TestSpeakerL2WithoutAPIServer(t *testing.T) {
	l := newL2Lab(t, 3)
	n1, n2, n3 := l.nodes[0], l.nodes[1], l.nodes[2]
	r1 := frr.Start(t, l.lab, "r1", frr.Config{ASN: routerASN, Neighbors: l.neighbors(nodeASN, "s3cret")})
	l.allowSecrets("bgp-pw")
	l.secret("bgp-pw", map[string]string{"password": "s3cret"})
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.bgpPeer("r1", r1.Host.IPv4, routerASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp-pw"}
		s.HoldTimeSeconds, s.KeepaliveTimeSeconds = ptr.To[int32](3), ptr.To[int32](1)
	})
	l.e.namespace(t, "demo", nil)
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n, "--bgp=true")
	}
	l.waitMembers(t, 3)
	waitSessions(t, r1, []netip.Addr{n1.host.IPv4, n2.host.IPv4, n3.host.IPv4})
	// The victim is whichever node owns the Service's address (node names
	// hash differently in every lab, so no fixed node is sure to own one);
	// a survivor that is not the heir is watched for its BGP session.
	v4s, _ := l.dualStack(t, "demo", "s", 1)
	moved := v4s[0]
	all := []string{n1.name, n2.name, n3.name}
	victim := l.byName(l2.Owner(moved, all))
	var rest []string
	for _, n := range all {
		if n != victim.name {
			rest = append(rest, n)
		}
	}
	heir := l.byName(l2.Owner(moved, rest))
	watched := l.byName(rest[0])
	if watched == heir {
		watched = l.byName(rest[1])
	}
	poll(t, settle, moved.String()+" answered by "+victim.name, func() error {
		if macs := l.arping(moved); len(macs) == 0 || l.name(macs[0]) != victim.name {
			return fmt.Errorf("replies from %v", l.names(macs))
		}
		return nil
	})
	established := establishedCounts(t, r1, l.speakerLab)

	resume, err := l.e.cp.PauseAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(resume)
	// Wait until both survivors have synced without the API server past the
	// Secret cache, as they do every 10 s with a password Secret.
	poll(t, 3*settle, "the survivors synced with their Secret unreadable", func() error {
		for _, n := range []*labNode{heir, watched} {
			if !n.speaker.logged("Cannot read a password Secret; using the answer read last") {
				return fmt.Errorf("%s not yet", n.name)
			}
		}
		return nil
	})
	victim.speaker.stop(syscall.SIGKILL)
	d := poll(t, settle, moved.String()+" answered by "+heir.name+" without the API server", func() error {
		if macs := l.arping(moved); len(macs) == 0 || l.name(macs[0]) != heir.name {
			return fmt.Errorf("replies from %v", l.names(macs))
		}
		return nil
	})
	t.Logf("MEASURED: without the API server, %s answered for %s's %v %v after %s's speaker was killed", heir.name, victim.name, moved, d, victim.name)
	// Failure detection takes 0.7 s and each arping poll up to 1 s; a sync
	// that waited for the API server (5 s per Secret read) took 7 s.
	if d > 5*time.Second {
		t.Errorf("the takeover took %v without the API server; want under 5 s", d)
	}
	now := establishedCounts(t, r1, l.speakerLab)
	for i, n := range l.nodes {
		if n == victim {
			continue
		}
		if st, _ := r1.NeighborState(t, n.host.IPv4); st != "Established" {
			t.Errorf("%s's BGP session is %q without the API server", n.name, st)
		}
		// Two counts per node: its IPv4 and IPv6 sessions.
		if now[2*i] != established[2*i] || now[2*i+1] != established[2*i+1] {
			t.Errorf("%s's session flapped without the API server: established counts %v, before %v", n.name, now, established)
		}
	}
	resume()
}
