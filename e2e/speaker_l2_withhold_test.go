package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/speaker"
)

// npL2Withhold is the NodePort of the layer-2 withdrawal test's Service.
const npL2Withhold = 30290

// l2WithholdBound is how soon the other node must answer for an address
// whose owner's forwarding broke (docs/forwarding.md): the drift check
// (1 s here) notices the broken table, the owner withholds the address and
// writes that to its BerthNodeStatus at its next status tick (2 s), and the
// other speaker's informer makes it take the address over.
const l2WithholdBound = 10 * time.Second

// TestSpeakerL2MovesWhatItCannotForward is the layer-2 variant of
// TestSpeakerWithdrawsWhatItCannotForward: two nodes answer on layer 2 for
// a Service, with forwarding on, and the owner's forwarding breaks for real
// (another process holds its nftables table). The owner stops answering and
// publishes that it withholds the address; the other node takes it over:
// a real ARP client sees it answer, and new connections reach the Service
// through it. The address stays there while the old owner is broken, and
// goes back once the old owner's forwarding is repaired.
func TestSpeakerL2MovesWhatItCannotForward(t *testing.T) {
	l := newL2Lab(t, 2)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "l2wh", nil)
	for _, n := range l.nodes {
		l.lineServer(t, n, npL2Withhold)
		if _, err := n.host.Exec(t.Context(), "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			t.Fatal(err)
		}
		l.startL2Speaker(t, t, n, "--forwarding=true", "--drift-check-interval=1s")
	}
	l.waitMembers(t, 2)
	svc := l.e.service(t, "l2wh", "web", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "line", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npL2Withhold}}
	})
	vip, _ := split(l.e.waitAllocated(t, "l2wh", "web", 1))
	addr := netip.AddrPortFrom(vip, 80).String()
	old := l.byName(l2.Owner(vip, []string{"node1", "node2"}))
	other := l.nodes[0]
	if other == old {
		other = l.nodes[1]
	}
	oldMAC, otherMAC := hostMAC(t, old.host), hostMAC(t, other.host)
	answeredBy := func(want *labNode) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			got, err := l.exchange(ctx, addr)
			if err == nil && got != want.name {
				err = fmt.Errorf("answered by %s, want %s", got, want.name)
			}
			return err
		}
	}
	poll(t, settle, "client reaches the NodePort through "+old.name, answeredBy(old))
	probe := l.startARPProbe(t, probeEvery, vip)
	poll(t, settle, vip.String()+" answered by "+old.name+" only", func() error { return probe.onlyMAC(vip, oldMAC) })

	broken := time.Now()
	release := holdTable(t, old)
	moved := probe.waitMAC(t, vip, broken, oldMAC, otherMAC, l2WithholdBound)
	poll(t, l2WithholdBound, "new connections reach the Service through "+other.name, answeredBy(other))
	served := time.Since(broken)
	if served > l2WithholdBound {
		t.Errorf("new connections reached %s only %v after the break, want within %v", other.name, served, l2WithholdBound)
	}
	t.Logf("MEASURED: %s answers ARP for %s %v after %s's forwarding broke; new connections reach the Service through it after %v",
		other.name, vip, moved.Round(time.Millisecond), old.name, served.Round(time.Millisecond))

	checkServiceEvent(t, l.e, svc, speaker.ReasonForwardingFailed, "node "+old.name+" withdrew "+vip.String())
	withholds := func() error {
		ns, err := l.e.berth.BerthV1alpha1().BerthNodeStatuses().Get(t.Context(), old.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if st := ns.Status; len(st.Withheld) != 1 || st.Withheld[0].Address != vip.String() || len(st.L2) != 0 {
			return fmt.Errorf("%s's status %+v", old.name, st)
		}
		return nil
	}
	poll(t, settle, old.name+"'s BerthNodeStatus withholds "+vip.String(), withholds)
	// No flapping: the old owner keeps trying to forward the address and
	// keeps failing, so it stays left out.
	holdsFor(t, 5*time.Second, vip.String()+" stays with "+other.name+" while "+old.name+" is broken", func() error {
		if err := probe.onlyMAC(vip, otherMAC); err != nil {
			return err
		}
		return withholds()
	})
	if err := answeredBy(other)(); err != nil {
		t.Errorf("after the stable window: %v", err)
	}

	// The repair: the old owner forwards the address again, says so,
	// and is a candidate again: it takes the address back, once.
	release()
	repaired := time.Now()
	back := probe.waitMAC(t, vip, repaired, otherMAC, oldMAC, l2WithholdBound)
	poll(t, l2WithholdBound, "new connections reach the Service through "+old.name+" again", answeredBy(old))
	t.Logf("MEASURED: %s answers ARP for %s again %v after its forwarding was repaired", old.name, vip, back.Round(time.Millisecond))
	checkServiceEvent(t, l.e, svc, speaker.ReasonForwardingRestored, "node "+old.name+" announces "+vip.String()+" again")
	poll(t, settle, old.name+"'s BerthNodeStatus announces "+vip.String()+" again", func() error {
		ns, err := l.e.berth.BerthV1alpha1().BerthNodeStatuses().Get(t.Context(), old.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if st := ns.Status; st.WithheldAddresses != 0 || !slices.Equal(st.L2, []string{vip.String()}) {
			return fmt.Errorf("%s's status %+v", old.name, st)
		}
		return nil
	})
	holdsFor(t, 3*time.Second, vip.String()+" stays with "+old.name+" after the repair", func() error { return probe.onlyMAC(vip, oldMAC) })
}
