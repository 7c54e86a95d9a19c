package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// npRanges is the NodePort of the source range test's Service.
const npRanges = 30481

// TestSpeakerSourceRanges checks that a Service's loadBalancerSourceRanges
// hold with the real kube-proxy in nftables and in iptables mode, with
// ipMode VIP (kube-proxy knows the address too) and Proxy (only Berth
// does): a client inside the ranges reaches the pod through the
// load-balancer address, a client outside them gets no answer, although
// in iptables mode it still reaches the NodePort itself (so nothing but
// Berth's check stops it at the load-balancer address: kube-proxy's own
// check is bypassed by Berth's rewrite there). Without ranges the second
// client gets in too.
func TestSpeakerSourceRanges(t *testing.T) {
	requireFwdTools(t)
	for _, mode := range []string{"nftables", "iptables"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "iptables" {
				hostdeps.Require(t, "iptables-restore", "ip6tables-restore")
			}
			testSourceRanges(t, mode)
		})
	}
}

func testSourceRanges(t *testing.T, mode string) {
	started := time.Now()
	bins, lab, e, n, pod := newKubeProxyLab(t)
	sl := &speakerLab{t: t, lab: lab, e: e, nodes: []*labNode{n}}
	allowed := &fwdLab{speakerLab: sl, client: lab.AddHost("allowed")}
	refused := &fwdLab{speakerLab: sl, client: lab.AddHost("refused")}

	lb := netip.MustParseAddr("198.51.100.11")
	for _, c := range []*netlab.Host{allowed.client, refused.client} {
		mustExec(t, c, "ip", "route", "add", hostRoute(lb).String(), "via", n.host.IPv4.String())
	}
	svc := e.service(t, "default", "web", withClass("example.com/test"), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npRanges, TargetPort: intstr.FromInt32(8080)}}
		s.Spec.LoadBalancerSourceRanges = []string{hostRoute(allowed.client.IPv4).String()}
	})
	setIPMode(t, e, svc, lb, corev1.LoadBalancerIPModeVIP)
	podEndpoints(t, e, svc, pod.IPv4, n.name)
	annotateForward(t, e, n, lb, "default/web")
	startKubeProxy(t, bins.KubeProxy, mode, e, n)
	n.speaker = startSpeaker(t, t, e, n, "--forwarding=true", "--bgp=false", "--cleanup-on-exit")
	// The rule and its ranges are written in one batch.
	poll(t, settle, "the speaker to forward "+lb.String(), func() error {
		if out, _ := nftTable(t, n); !strings.Contains(out, lb.String()) {
			return fmt.Errorf("%s not in table inet berth", lb)
		}
		return nil
	})
	t.Logf("lab, kube-proxy (%s mode) and speaker up after %v", mode, time.Since(started).Round(time.Millisecond))

	nodePort := func(ctx context.Context, _ netip.Addr, _ int) (answer, error) {
		return refused.get(ctx, n.host.IPv4, npRanges)
	}
	for _, ipMode := range []corev1.LoadBalancerIPMode{corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy} {
		setIPMode(t, e, svc, lb, ipMode)
		a, took := waitAnswer(t, allowed.get, lb, 80, 8080, settle)
		t.Logf("ipMode %s: the allowed client %s reached the pod through %s:80 in %v (the pod saw %s)", ipMode,
			allowed.client.IPv4, lb, took.Round(time.Millisecond), a.client)
		expectRefused(t, refused.get, lb, 80)
		t.Logf("ipMode %s: the refused client %s got no answer from %s:80 (3 tries)", ipMode, refused.client.IPv4, lb)
	}
	if mode == "iptables" {
		// kube-proxy itself does not restrict the NodePort: only Berth's
		// check refuses the load-balancer address.
		waitAnswer(t, nodePort, n.host.IPv4, npRanges, 8080, settle)
		t.Logf("the refused client still reaches the NodePort %s:%d directly", n.host.IPv4, npRanges)
	}

	retryUpdate(t, "Service web", func(ctx context.Context) error {
		cur, err := e.kube.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.LoadBalancerSourceRanges = nil
		_, err = e.kube.CoreV1().Services("default").Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	_, took := waitAnswer(t, refused.get, lb, 80, 8080, settle)
	t.Logf("ranges removed: the other client reached the pod in %v; total %v", took.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
}

// expectRefused checks that req gets no answer three times in a row.
func expectRefused(t *testing.T, req request, addr netip.Addr, port int) {
	t.Helper()
	for i := range 3 {
		if a, err := req(t.Context(), addr, port); err == nil {
			t.Fatalf("try %d: %s answered the refused client (the pod saw %s)", i+1, netip.AddrPortFrom(addr, uint16(port)), a.client)
		}
	}
}
