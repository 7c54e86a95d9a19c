package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// TestSpeakerL2ForgetsGoneNode runs three speakers under the chart's RBAC
// with a short --l2-forget-after: one is killed for good and its Node
// marked NotReady through the API, and the others leave it out of the
// quorum (a later revision of the membership record, which names the
// voters: all three, then the two left); someone deletes the
// record's Lease, and a speaker recreates it, the known list of the
// three speakers (stored from the start) too; then a second speaker
// is killed and restarted, and the third answers every address
// meanwhile, never two MACs at once. Without the record, 1 of 3 would
// have left every address dark (docs/layer2.md).
func TestSpeakerL2ForgetsGoneNode(t *testing.T) {
	top := t
	l := newL2Lab(t, 3)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "gone", nil)
	const forgetAfter = 2 * time.Second
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n, "--l2-forget-after="+forgetAfter.String())
	}
	l.waitMembers(t, 3)
	names := []string{"node1", "node2", "node3"}
	// The speakers keep the known list beside the record (under the
	// chart's admission policy), from their start.
	knownList := func() error {
		lease, err := l.e.kube.CoordinationV1().Leases(berthNS).Get(t.Context(), membersLease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got, want := lease.Annotations[knownAnnotation], `["node1","node2","node3"]`; got != want {
			return fmt.Errorf("known list %q, want %s", got, want)
		}
		return nil
	}
	d := poll(t, 30*time.Second, "the known list stored", knownList)
	t.Logf("MEASURED: the known list stored %v after the three speakers met", d)
	// By default (--l2-voters) the record names the voters: all three.
	d = l.waitVoters(t, names)
	t.Logf("MEASURED: the record named the three speakers voters %v after that", d)
	v4s, probe := l.answeredAddrs(t, "gone", "s", 6, names)

	dead, rebooted, survivor := l.nodes[2], l.nodes[1], l.nodes[0]
	dead.speaker.stop(syscall.SIGKILL)
	at := time.Now()
	l.setReady(t, dead.name, false)
	marked := time.Now()
	poll(t, settle, "node1 and node2 answering every address", func() error {
		for _, a := range v4s {
			rs := probe.replies(a, time.Now().Add(-300*time.Millisecond))
			if len(rs) == 0 {
				return fmt.Errorf("%s unanswered", a)
			}
			if n := l.name(rs[len(rs)-1].mac); n == dead.name {
				return fmt.Errorf("%s answered by %s", a, n)
			}
		}
		return nil
	})
	poll(t, 30*time.Second, "node3 out of the membership record", func() error {
		rec, err := l.membersRecord(t)
		if err != nil {
			return err
		}
		if rec.Rev < 2 || rec.Joint || len(rec.Out) != 1 || rec.Out[0] != dead.name || !slices.Equal(rec.Voters, names[:2]) {
			return fmt.Errorf("record %+v", rec)
		}
		return nil
	})
	t.Logf("MEASURED: %s left the quorum %v after its Node was marked NotReady (--l2-forget-after=%v)", dead.name, time.Since(marked), forgetAfter)
	probe.noOverlap(t, l, v4s, at)

	// Someone deletes the record's Lease: a speaker recreates it with the
	// record it follows (under the chart's admission policy).
	want, err := l.membersRecord(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.e.kube.CoordinationV1().Leases(berthNS).Delete(t.Context(), "berth-l2-members", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	d = poll(t, 30*time.Second, "the record's Lease recreated", func() error {
		rec, err := l.membersRecord(t)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, rec, cmpopts.EquateEmpty()); diff != "" {
			return fmt.Errorf("record (-want +got):\n%s", diff)
		}
		return nil
	})
	t.Logf("MEASURED: the deleted record's Lease was back with revision %d %v later", want.Rev, d)
	d = poll(t, 30*time.Second, "the known list back", knownList)
	t.Logf("MEASURED: the known list back %v after that", d)

	rebooted.speaker.stop(syscall.SIGKILL)
	at = time.Now()
	d = poll(t, settle, survivor.name+" answering every address", func() error { return probe.onlyBy(l, v4s, survivor.name) })
	t.Logf("MEASURED: %s answered every address %v after %s's speaker was killed, with %s gone", survivor.name, d, rebooted.name, dead.name)
	holdsFor(t, 3*time.Second, survivor.name+" answering every address", func() error { return probe.onlyBy(l, v4s, survivor.name) })
	l.startL2Speaker(t, top, rebooted, "--l2-forget-after="+forgetAfter.String())
	l.waitMembers(t, 2, survivor, rebooted)
	for _, a := range v4s {
		probe.waitMAC(t, a, time.Now(), "", hostMAC(t, l.byName(l2.Owner(a, names[:2])).host), settle)
	}
	probe.noOverlap(t, l, v4s, at)
}

// setReady sets the Ready condition of Node name, as the node lifecycle
// controller would.
func (l *l2Lab) setReady(t testing.TB, name string, ready bool) {
	t.Helper()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	retryUpdate(t, "Node "+name, func(ctx context.Context) error {
		n, err := l.e.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				n.Status.Conditions[i].Status, n.Status.Conditions[i].LastTransitionTime = status, metav1.Now()
			}
		}
		_, err = l.e.kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// membersRecord reads the membership record from its Lease.
func (l *l2Lab) membersRecord(t testing.TB) (l2.MemberRecord, error) {
	lease, err := l.e.kube.CoordinationV1().Leases(berthNS).Get(t.Context(), "berth-l2-members", metav1.GetOptions{})
	if err != nil {
		return l2.MemberRecord{}, err
	}
	var r struct {
		Rev        uint64   `json:"rev"`
		Out        []string `json:"out"`
		Joint      bool     `json:"joint"`
		NextOut    []string `json:"nextOut"`
		Voters     []string `json:"voters"`
		NextVoters []string `json:"nextVoters"`
	}
	if err := json.Unmarshal([]byte(lease.Annotations["berth.dev/l2-members"]), &r); err != nil {
		return l2.MemberRecord{}, err
	}
	return l2.MemberRecord{Rev: r.Rev, Out: r.Out, Joint: r.Joint, NextOut: r.NextOut, Voters: r.Voters, NextVoters: r.NextVoters}, nil
}
