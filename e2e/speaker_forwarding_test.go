package e2e

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
)

// NodePorts of the forwarding test's Services, set explicitly so that the
// nodes' stand-in listeners can be started before the Services exist.
const (
	npWebHTTP = 30080
	npWebDNS  = 30053
	npShareA  = 30081
	npShareB  = 30082
	npLocal   = 30090
)

// TestSpeakerForwarding sends real traffic from a client behind an FRR
// router to Service addresses announced over BGP by two speakers, and checks
// that each node's nftables table delivers it to the Service's NodePort
// (a listener standing in for kube-proxy), as Services change, as someone
// flushes the table, and as the speakers stop.
func TestSpeakerForwarding(t *testing.T) {
	fl := newFwdLab(t)
	start := time.Now()
	for _, l := range []struct {
		proto    string
		nodePort int
	}{{"tcp", npWebHTTP}, {"udp", npWebDNS}, {"tcp", npShareA}, {"tcp", npShareB}, {"tcp", npLocal}} {
		fl.listen(t, l.proto, l.nodePort)
	}
	e := fl.e
	e.namespace(t, "fwd", nil)
	e.service(t, "fwd", "web", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npWebHTTP},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: npWebDNS},
		}
	})
	shared := func(port, nodePort int32) svcOpt {
		return func(s *corev1.Service) {
			withAnnotation(v1alpha1.AnnotationSharingKey, "shared")(s)
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: port, Protocol: corev1.ProtocolTCP, NodePort: nodePort}}
		}
	}
	e.service(t, "fwd", "share-a", shared(8081, npShareA))
	e.service(t, "fwd", "share-b", shared(8082, npShareB))
	n1, n2 := fl.nodes[0], fl.nodes[1]
	fl.endpoints("fwd", "local", map[*labNode]bool{n2: true})
	e.service(t, "fwd", "local", func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npLocal}}
	})
	web4, web6 := split(e.waitAllocated(t, "fwd", "web", 2))
	t.Logf("lab ready and Services allocated %v after the test started", time.Since(fl.started))

	t.Run("client reaches a NodePort on an announcing node, TCP and UDP, IPv4 and IPv6", func(t *testing.T) {
		for _, c := range []struct {
			name     string
			req      request
			addr     netip.Addr
			port, np int
		}{
			{"TCP IPv4", fl.get, web4, 80, npWebHTTP},
			{"TCP IPv6", fl.get, web6, 80, npWebHTTP},
			{"UDP IPv4", fl.udp, web4, 53, npWebDNS},
			{"UDP IPv6", fl.udp, web6, 53, npWebDNS},
		} {
			_, took := waitAnswer(t, c.req, c.addr, c.port, c.np, settle)
			t.Logf("%s %s: first answer %v after the check started (%v after the Services were created)", c.name, netip.AddrPortFrom(c.addr, uint16(c.port)), took, time.Since(start))
			// The router hashes flows on ports: new flows spread over
			// both announcing nodes.
			seen := map[string]int{}
			for range 16 {
				a, err := c.req(t.Context(), c.addr, c.port)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if a.nodePort != c.np || (a.node != n1.name && a.node != n2.name) {
					t.Fatalf("%s: answered by %+v, want NodePort %d on a node", c.name, a, c.np)
				}
				seen[a.node]++
			}
			t.Logf("%s: 16 new flows answered by %v", c.name, seen)
			if len(seen) != 2 {
				t.Errorf("%s: 16 flows reached only %v; the router has ECMP routes via both nodes", c.name, seen)
			}
		}
	})

	share := e.waitAllocated(t, "fwd", "share-a", 1)[0]
	t.Run("two Services sharing an address reach their own NodePorts", func(t *testing.T) {
		if b := e.waitAllocated(t, "fwd", "share-b", 1)[0]; b != share {
			t.Fatalf("share-a has %s, share-b %s: want one shared address", share, b)
		}
		waitAnswer(t, fl.get, share, 8081, npShareA, settle)
		waitAnswer(t, fl.get, share, 8082, npShareB, settle)
	})

	t.Run("a changed port moves forwarding, a deleted Service stops it", func(t *testing.T) {
		retryUpdate(t, "Service fwd/share-a", func(ctx context.Context) error {
			s, err := e.kube.CoreV1().Services("fwd").Get(ctx, "share-a", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Ports[0].Port = 8083
			_, err = e.kube.CoreV1().Services("fwd").Update(ctx, s, metav1.UpdateOptions{})
			return err
		})
		_, took := waitAnswer(t, fl.get, share, 8083, npShareA, settle)
		t.Logf("port 8081 -> 8083: new port answers after %v", took)
		waitNoAnswer(t, fl.get, share, 8081, settle)
		if err := e.kube.CoreV1().Services("fwd").Delete(t.Context(), "share-b", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		took = waitNoAnswer(t, fl.get, share, 8082, settle)
		t.Logf("share-b deleted: %s:8082 stopped answering after %v", share, took)
		waitAnswer(t, fl.get, share, 8083, npShareA, settle) // the other sharer is untouched
		for _, n := range fl.nodes {
			if tab, _ := nftTable(t, n); strings.Contains(tab, ". 8082 :") || strings.Contains(tab, ". 8081 :") {
				t.Errorf("%s: table still forwards an old port:\n%s", n.name, tab)
			}
		}
	})

	t.Run("externalTrafficPolicy Local: the NodePort sees the client's address", func(t *testing.T) {
		local4, _ := split(e.waitAllocated(t, "fwd", "local", 1))
		waitNextHops(t, fl.router.Host, hostRoute(local4), fl.addrs(false, n2), settle)
		for range 8 {
			a, _ := waitAnswer(t, fl.get, local4, 80, npLocal, settle)
			if a.node != n2.name {
				t.Errorf("answered by %s; only %s has a local endpoint", a.node, n2.name)
			}
			if a.client.Addr() != fl.client.IPv4 {
				t.Errorf("the NodePort saw client %s, want the client's own %s (no SNAT)", a.client, fl.client.IPv4)
			}
		}
		if tab, _ := nftTable(t, n1); strings.Contains(tab, local4.String()) {
			t.Errorf("%s forwards %s but has no local endpoint and does not announce it:\n%s", n1.name, local4, tab)
		}
	})

	t.Run("a table flushed by hand is repaired", func(t *testing.T) {
		hasRules := func(tab string) bool {
			return strings.Contains(tab, "dnat ip to") && strings.Contains(tab, "dnat ip6 to")
		}
		for _, n := range fl.nodes {
			// flush table removes every rule and keeps the maps.
			mustExec(t, n.host, "nft", "flush", "table", "inet", "berth")
			if tab, _ := nftTable(t, n); hasRules(tab) {
				t.Logf("%s: table already repaired right after the flush", n.name)
			}
		}
		flushed := time.Now()
		for _, n := range fl.nodes {
			poll(t, settle, n.name+": table repaired", func() error {
				if tab, _ := nftTable(t, n); !hasRules(tab) || !strings.Contains(tab, web4.String()) || !strings.Contains(tab, web6.String()) {
					return errors.New("not repaired yet")
				}
				return nil
			})
		}
		t.Logf("both tables repaired %v after the flush (drift check every 1s)", time.Since(flushed))
		waitAnswer(t, fl.get, web4, 80, npWebHTTP, settle)
		waitAnswer(t, fl.udp, web6, 53, npWebDNS, settle)
		for _, n := range fl.nodes {
			if v := counter(t, n.speaker, "berth_speaker_forwarding_repairs_total"); v < 1 {
				t.Errorf("%s: berth_speaker_forwarding_repairs_total = %v, want >= 1", n.name, v)
			}
		}
	})

	t.Run("SIGKILL leaves the table, SIGTERM with --cleanup-on-exit removes it", func(t *testing.T) {
		n2.speaker.stop(syscall.SIGKILL)
		if tab, ok := nftTable(t, n2); !ok || !strings.Contains(tab, web4.String()) {
			t.Errorf("%s: after SIGKILL the table is gone or empty (exists %v):\n%s", n2.name, ok, tab)
		}
		// Traffic still flows: node1 forwards, and the router dropped
		// node2's routes when its session died.
		waitAnswer(t, fl.get, web4, 80, npWebHTTP, settle)
		n1.speaker.stop(syscall.SIGTERM)
		if _, ok := nftTable(t, n1); ok {
			t.Errorf("%s: table inet berth still exists after SIGTERM with --cleanup-on-exit", n1.name)
		}
		out := mustExec(t, n1.host, "nft", "list", "tables")
		if strings.Contains(out, "berth") {
			t.Errorf("%s: nft list tables: %s", n1.name, out)
		}
		out = mustExec(t, n2.host, "nft", "list", "tables")
		if !slices.Contains(strings.Split(strings.TrimSpace(out), "\n"), "table inet berth") {
			t.Errorf("%s: nft list tables lacks inet berth after SIGKILL: %q", n2.name, out)
		}
	})
}
