package cloud

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/api/v1alpha1"
	berthfake "github.com/berthlb/berth/client/clientset/versioned/fake"
)

// TestPoolsAvoidClusterAddresses: berth-ccm's pools backend, like
// berth-controller, never hands out the cluster's Service range or a
// node's address, refuses a Service asking for one, and moves a Service
// whose address a new node takes on its next call.
func TestPoolsAvoidClusterAddresses(t *testing.T) {
	logger, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	withAddr := func(n *v1.Node, a string) *v1.Node {
		n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: a}}
		return n
	}
	kube := kubefake.NewClientset(
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		withAddr(node("n1"), "192.0.2.1"),
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"192.0.2.2/32"}}},
	)
	// The API server serves ServiceCIDRs (Kubernetes 1.33 and later).
	kube.Resources = []*metav1.APIResourceList{{GroupVersion: "networking.k8s.io/v1", APIResources: []metav1.APIResource{{Name: "servicecidrs"}}}}
	p := NewPools(logger)
	p.Start(ctx, kube, berthfake.NewSimpleClientset(pool("p1", "", "192.0.2.1-192.0.2.5")))
	lb := &loadBalancers{backend: p}

	st, err := lb.EnsureLoadBalancer(ctx, cluster, service("new", created(1)), nil)
	if err != nil || cmp.Diff([]string{"192.0.2.3"}, ips(st)) != "" {
		t.Fatalf("new = %v, %v; want 192.0.2.3 (.1 is a node's, .2 the Service range)", ips(st), err)
	}
	_, err = lb.EnsureLoadBalancer(ctx, cluster, service("wants-node", created(2), annotation(v1alpha1.AnnotationAddresses, "192.0.2.1")), nil)
	if err == nil || !strings.Contains(err.Error(), "requested address 192.0.2.1 is a node's address, which Berth never hands out") {
		t.Errorf("asking for a node's address: %v", err)
	}
	if _, err := kube.CoreV1().Nodes().Create(ctx, withAddr(node("n2"), "192.0.2.3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, used := p.ledger.Config().Cluster().Forbidden(netip.MustParseAddr("192.0.2.3"))
		return used, nil
	})
	if err != nil {
		t.Fatal("the new node's address never reached the ledger")
	}
	st, err = lb.EnsureLoadBalancer(ctx, cluster, service("new", created(1), ingress("192.0.2.3")), nil)
	if err != nil || cmp.Diff([]string{"192.0.2.4"}, ips(st)) != "" {
		t.Fatalf("new after n2 took its address = %v, %v; want 192.0.2.4", ips(st), err)
	}
}
