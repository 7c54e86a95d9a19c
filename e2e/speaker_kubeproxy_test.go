package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/netlab"
)

// npKubeProxy is the NodePort of the kube-proxy test's Service.
const npKubeProxy = 30480

// TestSpeakerKubeProxy checks the speaker's forwarding against a real
// kube-proxy in nftables mode on the same node: Berth's rewrite chain
// (dstnat-5) turns LB:80 into nodeIP:NodePort, and kube-proxy's NAT chain
// (dstnat) DNATs that NodePort to a pod. With ipMode VIP kube-proxy also
// programs the load-balancer address itself; with ipMode Proxy it ignores
// it, so only Berth delivers it, which removing the speaker's Node
// annotation shows. No Berth controller handles the Service's class: the
// test writes its status, its EndpointSlice and the Node annotation that
// tells the speaker to forward the address (the way berth-ccm's eip mode
// does), so that the speaker runs forwarding only, without BGP.
func TestSpeakerKubeProxy(t *testing.T) {
	requireFwdTools(t)
	started := time.Now()
	bins, lab, e, n, pod := newKubeProxyLab(t)
	fl := &fwdLab{speakerLab: &speakerLab{t: t, lab: lab, e: e, nodes: []*labNode{n}}, client: lab.AddHost("client"), started: started}

	lb := netip.MustParseAddr("198.51.100.10")
	mustExec(t, fl.client, "ip", "route", "add", hostRoute(lb).String(), "via", n.host.IPv4.String())
	svc := e.service(t, "default", "web", withClass("example.com/test"), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npKubeProxy, TargetPort: intstr.FromInt32(8080)}}
	})
	setIPMode(t, e, svc, lb, corev1.LoadBalancerIPModeVIP)
	podEndpoints(t, e, svc, pod.IPv4, n.name)
	annotateForward(t, e, n, lb, "default/web")

	kp := startKubeProxy(t, bins.KubeProxy, "nftables", e, n)
	n.speaker = startSpeaker(t, t, e, n, "--forwarding=true", "--bgp=false", "--cleanup-on-exit")
	t.Logf("lab, kube-proxy and speaker started after %v", time.Since(started).Round(time.Millisecond))

	// (a) ipMode VIP: kube-proxy and Berth both know the address.
	poll(t, settle, "kube-proxy to program "+lb.String(), func() error {
		if !strings.Contains(kubeProxyTable(t, n), lb.String()) {
			return fmt.Errorf("%s not in table ip kube-proxy (kube-proxy log: %s)", lb, lastLine(kp))
		}
		return nil
	})
	took := poll(t, settle, "the speaker to forward "+lb.String(), func() error {
		if out, _ := nftTable(t, n); !strings.Contains(out, lb.String()) {
			return fmt.Errorf("%s not in table inet berth", lb)
		}
		return nil
	})
	t.Logf("ipMode VIP: both tables hold %s (the speaker's %v after the kube-proxy's)", lb, took.Round(time.Millisecond))
	a, took := waitAnswer(t, fl.get, lb, 80, 8080, settle)
	t.Logf("ipMode VIP: client reached the pod through %s:80 in %v (the pod saw %s, kube-proxy's masquerade)", lb, took.Round(time.Millisecond), a.client)

	// (b) ipMode Proxy: kube-proxy drops the address, Berth still
	// delivers it to the NodePort, which kube-proxy still serves.
	setIPMode(t, e, svc, lb, corev1.LoadBalancerIPModeProxy)
	took = poll(t, settle, "kube-proxy to drop "+lb.String(), func() error {
		switch out := kubeProxyTable(t, n); {
		case out == "":
			return errors.New("no table ip kube-proxy")
		case strings.Contains(out, lb.String()):
			return fmt.Errorf("%s still in table ip kube-proxy", lb)
		}
		return nil
	})
	t.Logf("ipMode Proxy: kube-proxy dropped %s in %v", lb, took.Round(time.Millisecond))
	_, took = waitAnswer(t, fl.get, lb, 80, 8080, settle)
	t.Logf("ipMode Proxy: client reached the pod through %s:80 in %v", lb, took.Round(time.Millisecond))

	// (c) Without the annotation nothing delivers the address; with it
	// back Berth does again.
	annotateForward(t, e, n, lb, "")
	took = waitNoAnswer(t, fl.get, lb, 80, settle)
	t.Logf("ipMode Proxy, annotation removed: %s:80 stopped answering in %v", lb, took.Round(time.Millisecond))
	annotateForward(t, e, n, lb, "default/web")
	_, took = waitAnswer(t, fl.get, lb, 80, 8080, settle)
	t.Logf("ipMode Proxy, annotation back: client reached the pod again in %v", took.Round(time.Millisecond))
	t.Logf("total %v", time.Since(started).Round(time.Millisecond))
}

// newKubeProxyLab returns the control plane's binaries, a lab, its
// control plane with the speaker's namespace, one node (a Node object and
// a host that routes) and a pod host answering HTTP on 8080.
func newKubeProxyLab(t *testing.T) (controlplane.Paths, *netlab.Lab, *env, *labNode, *netlab.Host) {
	t.Helper()
	bins, err := controlplane.BinaryPaths(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t)
	e := newEnvWith(t, controlplane.Options{BindAddress: lab.Gateway4})
	e.namespace(t, speakerNS, nil)
	n := &labNode{name: "node1", host: lab.AddHost("node1")}
	if _, err := controlplane.CreateNodeWith(t.Context(), e.kube, controlplane.NodeConfig{
		Name: n.name, Addresses: []netip.Addr{n.host.IPv4, n.host.IPv6},
	}); err != nil {
		t.Fatal(err)
	}
	// The node routes to the pod, as a CNI would make it.
	mustExec(t, n.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	pod := lab.AddHost("pod")
	podListen(t, pod, 8080)
	return bins, lab, e, n, pod
}

// podListen serves HTTP on h's IPv4 and port, answering like the NodePort
// stand-ins of fwdLab.listen ("<host> <port> <client address:port>"), so
// that parseAnswer and waitAnswer apply.
func podListen(t *testing.T, h *netlab.Host, port int) {
	t.Helper()
	addr := netip.AddrPortFrom(h.IPv4, uint16(port)).String()
	l, _, err := h.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s: listen %s: %v", h.Name, addr, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %d %s\n", h.Name, port, r.RemoteAddr)
	})}
	t.Cleanup(func() { _ = srv.Close() })
	go func() { _ = srv.Serve(l) }()
}

// startKubeProxy runs kube-proxy in mode (nftables or iptables) in n's
// namespace. The conntrack flags leave the kernel's settings alone.
func startKubeProxy(t *testing.T, bin, mode string, e *env, n *labNode) *proc {
	t.Helper()
	cmd := n.host.Command(context.Background(), bin,
		"--proxy-mode="+mode,
		"--kubeconfig", e.cp.Kubeconfig(),
		"--hostname-override", n.name,
		"--nodeport-addresses", hostRoute(n.host.IPv4).String(),
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--healthz-bind-address", netip.AddrPortFrom(n.host.IPv4, 10256).String(),
		"--metrics-bind-address", "127.0.0.1:10249",
		"--oom-score-adj=0",
		"-v=2",
	)
	return startProc(t, "kube-proxy "+n.name, cmd, syscall.SIGTERM)
}

// setIPMode writes the Service's status: one ingress, addr, with mode.
func setIPMode(t *testing.T, e *env, svc *corev1.Service, addr netip.Addr, mode corev1.LoadBalancerIPMode) {
	t.Helper()
	retryUpdate(t, "Service status "+svc.Name, func(ctx context.Context) error {
		cur, err := e.kube.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr.String(), IPMode: ptr.To(mode)}}
		_, err = e.kube.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// podEndpoints writes the Service's EndpointSlice: one ready endpoint, ip
// on node (no endpoint controller runs).
func podEndpoints(t *testing.T, e *env, svc *corev1.Service, ip netip.Addr, node string) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-e2e", Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			NodeName:   ptr.To(node),
		}},
	}
	if _, err := e.kube.DiscoveryV1().EndpointSlices(svc.Namespace).Create(t.Context(), es, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create EndpointSlice %s: %v", es.Name, err)
	}
}

// annotateForward sets n's forward.berth.dev/<addr> annotation to value,
// or removes it if value is empty.
func annotateForward(t *testing.T, e *env, n *labNode, addr netip.Addr, value string) {
	t.Helper()
	v := "null"
	if value != "" {
		v = fmt.Sprintf("%q", value)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, v1alpha1.NodeAnnotationForwardPrefix+addr.String(), v)
	if _, err := e.kube.CoreV1().Nodes().Patch(t.Context(), n.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotate node %s: %v", n.name, err)
	}
}

// kubeProxyTable returns `nft list table ip kube-proxy` in n, "" while
// kube-proxy has not created it.
func kubeProxyTable(t *testing.T, n *labNode) string {
	t.Helper()
	out, err := n.host.Exec(t.Context(), "nft", "list", "table", "ip", "kube-proxy")
	if err != nil {
		return ""
	}
	return out
}

// lastLine returns the last line p logged.
func lastLine(p *proc) string { return p.tail(1) }
