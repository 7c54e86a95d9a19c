package e2e

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/speaker"
)

// npWithhold is the NodePort of the withdrawal test's Service.
const npWithhold = 30100

// TestSpeakerWithdrawsWhatItCannotForward breaks node1's forwarding for
// real: its nftables table is replaced by one that another process owns
// (flags owner), which the speaker can neither change nor delete. Node1
// withdraws the Service's address, so the router drops that next hop and
// every new flow reaches node2; node1 says why in an Event on the Service
// and in its BerthNodeStatus. Once the other process exits, its table
// goes, node1 writes its own again and announces the address again.
func TestSpeakerWithdrawsWhatItCannotForward(t *testing.T) {
	fl := newFwdLab(t)
	fl.listen(t, "tcp", npWithhold)
	e := fl.e
	e.namespace(t, "wh", nil)
	svc := e.service(t, "wh", "web", func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npWithhold}}
	})
	addr := e.waitAllocated(t, "wh", "web", 1)[0]
	n1, n2 := fl.nodes[0], fl.nodes[1]
	both := fl.addrs(addr.Is6())
	only2 := fl.addrs(addr.Is6(), n2)
	waitNextHops(t, fl.router.Host, hostRoute(addr), both, settle)
	waitAnswer(t, fl.get, addr, 80, npWithhold, settle)

	broken := time.Now()
	release := holdTable(t, n1)
	waitNextHops(t, fl.router.Host, hostRoute(addr), only2, settle)
	t.Logf("MEASURED: the router dropped node1's next hop %v after node1's forwarding broke", time.Since(broken))

	t.Run("traffic keeps flowing through node2", func(t *testing.T) {
		for i := range 16 {
			a, err := fl.get(t.Context(), addr, 80)
			if err != nil {
				t.Fatalf("flow %d: %v", i, err)
			}
			if a.node != n2.name || a.nodePort != npWithhold {
				t.Fatalf("flow %d answered by %+v, want node2's NodePort %d", i, a, npWithhold)
			}
		}
	})

	t.Run("node1 says why, on the Service and in its status", func(t *testing.T) {
		checkServiceEvent(t, e, svc, speaker.ReasonForwardingFailed, "node node1 withdrew "+addr.String())
		poll(t, settle, "node1's BerthNodeStatus withholds "+addr.String(), func() error {
			ns, err := e.berth.BerthV1alpha1().BerthNodeStatuses().Get(t.Context(), n1.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := ns.Status
			if st.WithheldAddresses != 1 || len(st.Withheld) != 1 || st.Withheld[0].Address != addr.String() ||
				!slices.Equal(st.Withheld[0].Services, []string{"wh/web"}) || st.Withheld[0].Reason == "" || len(st.BGP) != 0 {
				return fmt.Errorf("status %+v", st)
			}
			t.Logf("node1 withholds %s: %s", addr, st.Withheld[0].Reason)
			return nil
		})
	})

	// The owner exits: its table goes with it.
	release()
	repaired := time.Now()
	waitNextHops(t, fl.router.Host, hostRoute(addr), both, settle)
	t.Logf("MEASURED: the router had node1's next hop again %v after its table was freed", time.Since(repaired))
	checkServiceEvent(t, e, svc, speaker.ReasonForwardingRestored, "node node1 announces "+addr.String()+" again")
	poll(t, settle, "node1's BerthNodeStatus announces "+addr.String()+" again", func() error {
		ns, err := e.berth.BerthV1alpha1().BerthNodeStatuses().Get(t.Context(), n1.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ns.Status.WithheldAddresses != 0 || !slices.Equal(ns.Status.BGP, []string{addr.String()}) {
			return fmt.Errorf("status %+v", ns.Status)
		}
		return nil
	})
	seen := map[string]bool{}
	for range 16 {
		if a, err := fl.get(t.Context(), addr, 80); err == nil {
			seen[a.node] = true
		}
	}
	if !seen[n1.name] {
		t.Errorf("16 new flows reached only %v after the repair", seen)
	}
}

// holdTable breaks n's forwarding for real: another process takes n's
// nftables table (flags owner), so that the speaker's next check finds it
// changed and every rewrite fails with EPERM. release ends that process,
// and its table goes with it.
func holdTable(t *testing.T, n *labNode) (release func()) {
	t.Helper()
	hold := n.host.Command(context.Background(), "nft", "-i")
	stdin, err := hold.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	hold.Stdout, hold.Stderr = &out, &out
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	release = func() { _ = stdin.Close(); _ = hold.Wait() }
	t.Cleanup(release)
	if _, err := io.WriteString(stdin, "delete table inet berth\nadd table inet berth { flags owner; }\n"); err != nil {
		t.Fatal(err)
	}
	poll(t, settle, n.name+"'s table is owned by nft -i", func() error {
		if tbl, _ := nftTable(t, n); !strings.Contains(tbl, "flags owner") {
			return fmt.Errorf("table %q; nft said %q", tbl, out.String())
		}
		return nil
	})
	return release
}

// checkServiceEvent waits for an Event of reason on svc, attached to it by
// its UID, whose message contains text.
func checkServiceEvent(t *testing.T, e *env, svc *corev1.Service, reason, text string) {
	t.Helper()
	poll(t, settle, fmt.Sprintf("a %s Event on Service %s/%s", reason, svc.Namespace, svc.Name), func() error {
		list, err := e.kube.CoreV1().Events(svc.Namespace).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + svc.Name + ",reason=" + reason,
		})
		if err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.InvolvedObject.UID == svc.UID && ev.InvolvedObject.Kind == "Service" && strings.Contains(ev.Message, text) {
				return nil
			}
			seen = append(seen, fmt.Sprintf("%s (uid %q)", ev.Message, ev.InvolvedObject.UID))
		}
		return fmt.Errorf("Events %v; want one naming %q with uid %s", seen, text, svc.UID)
	})
}
