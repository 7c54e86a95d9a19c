package e2e

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/migrate"
)

// metallbTakeoverConfig is the MetalLB configuration of the cluster that
// TestMigrateTakeover takes over.
const metallbTakeoverConfig = `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: prod, namespace: metallb-system}
spec:
  addresses: [198.51.100.0/24]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: reserved-ips, namespace: metallb-system}
spec:
  addresses: [203.0.113.0/28]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: all, namespace: metallb-system}
`

// foreignSvc is a Service as MetalLB leaves it: its annotations and the
// addresses MetalLB wrote into its status.
type foreignSvc struct {
	ns, name    string
	ports       []int32
	annotations map[string]string
	ips         []string
}

// takeoverServices are the Services of the cluster: a shared pair under
// each spelling of allow-shared-ip, a pair shared across namespaces (which
// MetalLB allows), pinned ones under both spellings of loadBalancerIPs, one
// naming an autoAssign: false pool, pairs and pinned ones as Cilium and
// kube-vip annotate them, and plain ones at addresses that are not the
// lowest free ones, so that a renumbering cannot go unnoticed.
func takeoverServices(plain int) []foreignSvc {
	ann := func(kv ...string) map[string]string {
		m := map[string]string{"metallb.universe.tf/ip-allocated-from-pool": "prod"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	out := []foreignSvc{
		{"shop", "web-http", []int32{80}, ann("metallb.universe.tf/allow-shared-ip", "web"), []string{"198.51.100.77"}},
		{"shop", "web-https", []int32{443}, ann("metallb.io/allow-shared-ip", "web"), []string{"198.51.100.77"}},
		{"shop", "api", []int32{8080}, ann("metallb.io/allow-shared-ip", "api"), []string{"198.51.100.88"}},
		{"billing", "api", []int32{9090}, ann("metallb.io/allow-shared-ip", "api"), []string{"198.51.100.88"}},
		{"shop", "pinned", []int32{80}, ann("metallb.universe.tf/loadBalancerIPs", "203.0.113.5"), []string{"203.0.113.5"}},
		{"shop", "pinned-io", []int32{80}, ann("metallb.io/loadBalancerIPs", "198.51.100.150"), []string{"198.51.100.150"}},
		{"shop", "named-pool", []int32{80}, ann("metallb.universe.tf/address-pool", "reserved-ips"), []string{"203.0.113.9"}},
		// Left by Cilium LB-IPAM and kube-vip: their annotations are read too.
		{"shop", "cilium-dns-udp", []int32{53}, map[string]string{"lbipam.cilium.io/sharing-key": "dns"}, []string{"198.51.100.99"}},
		{"shop", "cilium-dns-tcp", []int32{5353}, map[string]string{"lbipam.cilium.io/sharing-key": "dns"}, []string{"198.51.100.99"}},
		{"shop", "cilium-pinned", []int32{80}, map[string]string{"lbipam.cilium.io/ips": "198.51.100.120"}, []string{"198.51.100.120"}},
		{"shop", "kube-vip-pinned", []int32{80}, map[string]string{"kube-vip.io/loadbalancerIPs": "198.51.100.121"}, []string{"198.51.100.121"}},
	}
	for i := range plain {
		out = append(out, foreignSvc{"shop", "plain-" + strconv.Itoa(i), []int32{80}, ann(),
			[]string{netip.AddrFrom4([4]byte{198, 51, 100, byte(255 - i%100)}).String()}})
	}
	return out
}

// TestMigrateTakeover takes over a cluster from MetalLB without
// renumbering: Services hold the addresses MetalLB wrote into their status
// and carry MetalLB's annotations; the pools are what berth migrate made of
// MetalLB's configuration; berth-controller, under the chart's RBAC, then
// starts. Every Service must end Allocated with exactly the addresses it
// had, the shared pairs together, and a new Service must get an address
// none of them holds.
func TestMigrateTakeover(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := controlplane.CreateNode(ctx, e.kube, "node-1", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	applyConverted(t, e, metallbTakeoverConfig)
	svcs := takeoverServices(6)
	for _, s := range svcs {
		e.foreignService(t, s)
	}
	// A Service whose two annotations disagree: its request cannot be
	// read, so it keeps its address and says why.
	conflict := foreignSvc{"shop", "conflict", []int32{80}, map[string]string{
		"metallb.universe.tf/loadBalancerIPs": "198.51.100.60",
		"kube-vip.io/loadbalancerIPs":         "198.51.100.61",
	}, []string{"198.51.100.60"}}
	e.foreignService(t, conflict)

	ctrl := e.startController(t)
	start := time.Now()
	ctrl.waitReady(t)

	moved := 0
	for _, s := range svcs {
		got := e.waitAllocated(t, s.ns, s.name, len(s.ips))
		if got[0].String() != s.ips[0] {
			moved++
			t.Errorf("%s/%s moved from %s to %s", s.ns, s.name, s.ips[0], got[0])
		}
	}
	t.Logf("%d Services adopted, %d moved, %v after the controller started", len(svcs), moved, time.Since(start))

	c := e.waitService(t, "shop", "conflict", "InvalidRequest keeping its address", func(s *corev1.Service) bool {
		c := condition(s)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonInvalidRequest
	})
	if msg := condition(c).Message; !strings.Contains(msg, "metallb.universe.tf/loadBalancerIPs") || !strings.Contains(msg, "kube-vip.io/loadbalancerIPs") {
		t.Errorf("conflict's condition %q does not name both annotations", msg)
	}
	if got := addrs(c); len(got) != 1 || got[0].String() != "198.51.100.60" {
		t.Errorf("conflict holds %v, want its address 198.51.100.60 kept", got)
	}

	// A new Service gets the lowest address that nobody held: .0 (the
	// pool has no avoidBuggyIPs), and later ones skip every held address.
	held := map[netip.Addr]bool{mustAddr("198.51.100.60"): true}
	for _, s := range svcs {
		held[mustAddr(s.ips[0])] = true
	}
	e.service(t, "shop", "new", withPorts(80))
	t.Logf("conflict checked after %v", time.Since(start))
	if got := e.waitAllocated(t, "shop", "new", 1); held[got[0]] || !got[0].Is4() || got[0].String() != "198.51.100.0" {
		t.Errorf("a new Service got %v, want 198.51.100.0, which no adopted Service holds", got)
	}
}

// applyConverted converts a MetalLB configuration with berth migrate and
// creates the result, failing on anything the report says was lost.
func applyConverted(t testing.TB, e *env, config string) {
	t.Helper()
	objs, err := migrate.ReadYAML(strings.NewReader(config))
	if err != nil {
		t.Fatal(err)
	}
	res := migrate.Convert(objs)
	for _, n := range res.Notes {
		if n.Level == migrate.Lost {
			t.Fatalf("the conversion lost something: %s", n)
		}
	}
	var out bytes.Buffer
	if err := migrate.WriteYAML(&out, res); err != nil {
		t.Fatal(err)
	}
	emitted, err := migrate.ReadYAML(&out)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(e.cp.RESTConfig())
	for _, o := range emitted {
		if _, err := dyn.Resource(berthResource(t, o)).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// foreignService creates a LoadBalancer Service and writes s.ips into its
// status, as the implementation Berth takes over left it.
func (e *env) foreignService(t testing.TB, s foreignSvc) {
	t.Helper()
	e.namespace(t, s.ns, nil)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name, Annotations: s.annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": s.name},
		},
	}
	for _, p := range s.ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "p" + strconv.Itoa(int(p)), Port: p, Protocol: corev1.ProtocolTCP})
	}
	created, err := e.kube.CoreV1().Services(s.ns).Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s/%s: %v", s.ns, s.name, err)
	}
	for _, ip := range s.ips {
		created.Status.LoadBalancer.Ingress = append(created.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	if _, err := e.kube.CoreV1().Services(s.ns).UpdateStatus(t.Context(), created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("status of %s/%s: %v", s.ns, s.name, err)
	}
}
