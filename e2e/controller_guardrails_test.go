package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

// TestControllerClusterAddresses runs berth-controller under the chart's
// RBAC against a real API server whose ServiceCIDR "kubernetes" covers
// 198.18.128.0/20: no pool hands out the cluster's Service range, a Node's
// pod range or a Node's address; a Service asking for one (the API
// server's own Service IP) is refused with a condition saying why; and a
// Service whose address a new Node takes is moved, with a Warning Event.
func TestControllerClusterAddresses(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := controlplane.CreateNode(ctx, e.kube, "guard-n1", mustAddr("203.0.113.0")); err != nil {
		t.Fatal(err)
	}
	setPodCIDRs(t, e, "guard-n1", "203.0.113.4/31")
	ctrl := e.startController(t)
	ctrl.waitReady(t)

	e.namespace(t, "guard", nil)
	e.pool(t, "guard", v1alpha1.BerthIPPoolSpec{
		Addresses:         []v1alpha1.AddressRange{"198.18.128.0/30", "203.0.113.0/29"},
		ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"guard"}},
	})
	e.service(t, "guard", "first", withAnnotation(v1alpha1.AnnotationPool, "guard"))
	if got := e.waitAllocated(t, "guard", "first", 1); got[0] != mustAddr("203.0.113.1") {
		t.Fatalf("guard/first got %v, want 203.0.113.1 (198.18.128.0/30 is the Service range, 203.0.113.0 a node's address)", got)
	}
	for name, want := range map[string]string{
		"198.18.128.1": "requested address 198.18.128.1 is inside the cluster's Service range 198.18.128.0/20, which Berth never hands out",
		"203.0.113.5":  "requested address 203.0.113.5 is inside the cluster's pod range 203.0.113.4/31",
		"203.0.113.0":  "requested address 203.0.113.0 is a node's address",
	} {
		svc := "asks-" + strings.ReplaceAll(name, ".", "-")
		e.service(t, "guard", svc, withAnnotation(v1alpha1.AnnotationAddresses, name))
		c := e.waitPending(t, "guard", svc, v1alpha1.ReasonRequestedAddressUnavailable)
		if !strings.Contains(c.Message, want) {
			t.Errorf("%s: condition %q, want it to contain %q", svc, c.Message, want)
		}
		if ev := e.events(t, "guard", svc, "AllocationFailed"); !slices.ContainsFunc(ev, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("%s: AllocationFailed Events %q lack %q", svc, ev, want)
		}
	}

	// A new Node gets first's address: first moves and is told why.
	if _, err := controlplane.CreateNode(ctx, e.kube, "guard-n2", mustAddr("203.0.113.1")); err != nil {
		t.Fatal(err)
	}
	e.waitService(t, "guard", "first", "moved to 203.0.113.2", func(s *corev1.Service) bool {
		return slices.Equal(addrs(s), []netip.Addr{mustAddr("203.0.113.2")})
	})
	ev := e.eventsWithin(t, "guard", "first", "AddressChanged", 10*time.Second)
	if !slices.ContainsFunc(ev, func(m string) bool { return strings.Contains(m, "203.0.113.1 is a node's address now") }) {
		t.Errorf("AddressChanged Events %q do not say the address is a node's now", ev)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.berth.BerthV1alpha1().BerthIPPools().Get(ctx, "guard", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionClusterOverlap)
		return c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "Service range 198.18.128.0/20") &&
			strings.Contains(c.Message, "node addresses 203.0.113.0, 203.0.113.1"), nil
	})
	if err != nil {
		p, _ := e.berth.BerthV1alpha1().BerthIPPools().Get(ctx, "guard", metav1.GetOptions{})
		t.Errorf("pool guard has no ClusterOverlap condition naming the overlap: %+v", p.Status.Conditions)
	}
	// Events about cluster-scoped objects go to namespace default.
	if ev := e.eventsWithin(t, "default", "guard", "ClusterAddresses", 10*time.Second); len(ev) == 0 {
		t.Error("no ClusterAddresses Event on pool guard")
	}

	// A range spanning loopback with both ends outside it passes the API
	// server's rules (CEL cannot order addresses); the controller refuses
	// it with Ready False and an Event.
	e.pool(t, "spans-loopback", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"126.255.255.0-128.0.0.10"}})
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.berth.BerthV1alpha1().BerthIPPools().Get(ctx, "spans-loopback", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "InvalidSpec" &&
			strings.Contains(c.Message, `"126.255.255.0-128.0.0.10" spans the special-purpose block 127.0.0.0/8`), nil
	})
	if err != nil {
		t.Error("pool spans-loopback is not Ready False with reason InvalidSpec naming the loopback block")
	}
	if ev := e.eventsWithin(t, "default", "spans-loopback", "InvalidSpec", 10*time.Second); len(ev) == 0 {
		t.Error("no InvalidSpec Event on pool spans-loopback")
	}
}

// setPodCIDRs sets a Node's spec.podCIDRs, as the node IPAM controller
// would.
func setPodCIDRs(t *testing.T, e *env, node string, cidrs ...string) {
	t.Helper()
	n, err := e.kube.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.PodCIDR, n.Spec.PodCIDRs = cidrs[0], cidrs
	if _, err := e.kube.CoreV1().Nodes().Update(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
