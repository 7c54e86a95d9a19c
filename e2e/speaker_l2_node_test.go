package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// TestSpeakerL2DeletedNode checks docs/layer2.md's two-node trade-off:
// when one of two speakers dies, the other is left with 1 of 2 known
// members, no lease, and the address goes dark; once the dead node's Node
// is deleted the survivor forgets it, holds the quorum again (1 of 1) and
// answers.
func TestSpeakerL2DeletedNode(t *testing.T) {
	l := newL2Lab(t, 2)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "gone", nil)
	for _, n := range l.nodes {
		// Without the tie-breaker, which would let the survivor serve
		// (TestSpeakerL2TwoNodes): the deletion is what frees it here.
		l.startL2Speaker(t, t, n, "--l2-tiebreak-lease=")
	}
	l.waitMembers(t, 2)
	v4s, _ := l.dualStack(t, "gone", "s", 1)
	a := v4s[0]
	victim := l.byName(l2.Owner(a, []string{"node1", "node2"}))
	survivor := l.nodes[0]
	if survivor == victim {
		survivor = l.nodes[1]
	}
	probe := l.startARPProbe(t, probeEvery, a)
	probe.waitMAC(t, a, time.Now(), "", hostMAC(t, victim.host), settle)

	victim.speaker.stop(syscall.SIGKILL)
	at := time.Now()
	// Dark: the survivor hears 1 of the 2 it knows and holds no lease.
	dark := poll(t, settle, a.String()+" unanswered after its owner died", func() error {
		if rs := probe.replies(a, time.Now().Add(-300*time.Millisecond)); len(rs) > 0 {
			return fmt.Errorf("%d replies in the last 300ms, the last from %s", len(rs), l.name(rs[len(rs)-1].mac))
		}
		return nil
	})
	t.Logf("MEASURED: %s dark %v after %s's speaker was killed", a, dark, victim.name)
	holdsFor(t, 3*time.Second, a.String()+" dark while "+victim.name+"'s Node exists", func() error {
		if rs := probe.replies(a, time.Now().Add(-300*time.Millisecond)); len(rs) > 0 {
			return fmt.Errorf("answered by %s without a majority", l.name(rs[len(rs)-1].mac))
		}
		return nil
	})
	if q := survivor.speaker.gauge("berth_speaker_l2_quorate"); q != "0" {
		t.Errorf("%s says quorate %q with 1 of 2 known members", survivor.name, q)
	}

	at = time.Now()
	if err := l.e.kube.CoreV1().Nodes().Delete(t.Context(), victim.name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	d := probe.waitMAC(t, a, at, "", hostMAC(t, survivor.host), settle)
	t.Logf("MEASURED: %s answered by %s %v after %s's Node was deleted", a, survivor.name, d, victim.name)
	if !survivor.speaker.logged("Forgetting speakers whose Node was deleted") {
		t.Errorf("%s answers, but never logged forgetting %s", survivor.name, victim.name)
	}
	holdsFor(t, time.Second, "only "+survivor.name+" answering", func() error { return probe.onlyMAC(a, hostMAC(t, survivor.host)) })
}
