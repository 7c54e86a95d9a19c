package cloud

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/api/v1alpha1"
	berthfake "github.com/berthlb/berth/client/clientset/versioned/fake"
	"github.com/berthlb/berth/ledger"
)

// TestStartWithInformers runs the backend on fake clientsets: the replay
// happens before the first answer, and addresses another implementation
// gives later are never handed out by the plugin.
func TestStartWithInformers(t *testing.T) {
	logger, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kube := kubefake.NewClientset(
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		service("kept", created(1), ingress("192.0.2.3")),
	)
	berth := berthfake.NewSimpleClientset(pool("p1", "", "192.0.2.1-192.0.2.4"))
	p := NewPools(logger)
	p.Start(ctx, kube, berth)
	lb := &loadBalancers{backend: p}

	st, exists, err := lb.GetLoadBalancer(ctx, cluster, service("kept"))
	if err != nil || !exists || cmp.Diff([]string{"192.0.2.3"}, ips(st)) != "" {
		t.Fatalf("after start: kept = %v, %v, %v; want 192.0.2.3", ips(st), exists, err)
	}
	// The add-on controller serves a classed Service with .1.
	classed := service("classed", created(2), class("berth.dev/lb"), ingress("192.0.2.1"), addOn)
	if _, err := kube.CoreV1().Services("default").Create(ctx, classed, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(p.ledger.Lookup(ledger.ForeignPrefix+"default/classed")) == 1, nil
	})
	if err != nil {
		t.Fatalf("the classed Service's address was not recorded: %v", err)
	}
	st, err = lb.EnsureLoadBalancer(ctx, cluster, service("new", created(3)), nil)
	if err != nil || cmp.Diff([]string{"192.0.2.2"}, ips(st)) != "" {
		t.Fatalf("new = %v, %v; want 192.0.2.2", ips(st), err)
	}
	// Once the classed Service is gone, its address is free again.
	if err := kube.CoreV1().Services("default").Delete(ctx, "classed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(p.ledger.Lookup(ledger.ForeignPrefix+"default/classed")) == 0, nil
	})
	if err != nil {
		t.Fatalf("the classed Service's address was not released: %v", err)
	}
	st, err = lb.EnsureLoadBalancer(ctx, cluster, service("newer", created(4)), nil)
	if err != nil || cmp.Diff([]string{"192.0.2.1"}, ips(st)) != "" {
		t.Fatalf("newer = %v, %v; want 192.0.2.1", ips(st), err)
	}
}

// TestHandover: an unclassed Service the add-on controller served is
// recorded as another implementation's; once the add-on releases it
// (condition and ingress gone), that record goes and its address is free
// for the plugin again.
func TestHandover(t *testing.T) {
	logger, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kube := kubefake.NewClientset(
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		service("web", created(1), ingress("192.0.2.1"), addOn),
	)
	p := NewPools(logger)
	p.Start(ctx, kube, berthfake.NewSimpleClientset(pool("p1", "", "192.0.2.1-192.0.2.2")))
	lb := &loadBalancers{backend: p}
	if _, _, err := lb.GetLoadBalancer(ctx, cluster, service("web")); err != nil {
		t.Fatal(err)
	}
	if got := p.ledger.Lookup(ledger.ForeignPrefix + "default/web"); len(got) != 1 {
		t.Fatalf("the add-on's address is not recorded: %v", got)
	}
	// The add-on controller lets go: its status write removes both.
	released := service("web", created(1))
	if _, err := kube.CoreV1().Services("default").UpdateStatus(ctx, released, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(p.ledger.Lookup(ledger.ForeignPrefix+"default/web")) == 0, nil
	})
	if err != nil {
		t.Fatalf("the record of the add-on's holding stayed after the handover: %v", err)
	}
	st, err := lb.EnsureLoadBalancer(ctx, cluster, released, nil)
	if err != nil || cmp.Diff([]string{"192.0.2.1"}, ips(st)) != "" {
		t.Fatalf("web after the handover = %v, %v; want 192.0.2.1 again", ips(st), err)
	}
}

// TestFailedEnsureKeepsStatusAddress: when Ensure fails, the service
// controller leaves the Service's status as it was, so the address it shows
// must not be handed to another Service.
func TestFailedEnsureKeepsStatusAddress(t *testing.T) {
	lb, ctx := newTestCloud(t, []*v1alpha1.BerthIPPool{pool("p1", "", "192.0.2.1-192.0.2.2")})
	first, err := lb.EnsureLoadBalancer(ctx, cluster, service("web", created(1)), nil)
	if err != nil || cmp.Diff([]string{"192.0.2.1"}, ips(first)) != "" {
		t.Fatalf("web = %v, %v; want 192.0.2.1", ips(first), err)
	}
	// web now asks for an address in no pool: Ensure fails, and its status
	// (not rewritten) still shows .1.
	broken := service("web", created(1), ingress("192.0.2.1"), annotation(v1alpha1.AnnotationAddresses, "203.0.113.9"))
	if _, err := lb.EnsureLoadBalancer(ctx, cluster, broken, nil); err == nil {
		t.Fatal("Ensure of an address in no pool succeeded")
	}
	other, err := lb.EnsureLoadBalancer(ctx, cluster, service("other", created(2)), nil)
	if err != nil || cmp.Diff([]string{"192.0.2.2"}, ips(other)) != "" {
		t.Errorf("other = %v, %v; want 192.0.2.2, not the address web still shows", ips(other), err)
	}
}
