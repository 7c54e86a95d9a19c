package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/netlab"
)

// TestControlPlane checks that the real API server accepts everything Berth's
// end-to-end tests build on: Namespaces, LoadBalancer Services of both
// families, Nodes without a kubelet, and validated BerthIPPools.
func TestControlPlane(t *testing.T) {
	start := time.Now()
	cp := controlplane.StartForTest(t, controlplane.Options{})
	t.Logf("control plane up in %v (including binaries)", time.Since(start).Round(time.Millisecond))
	ctx := t.Context()

	cfg := cp.RESTConfig()
	if cfg.Insecure || len(cfg.CAData) == 0 {
		t.Errorf("RESTConfig does not verify the server: Insecure=%v, %d bytes of CA", cfg.Insecure, len(cfg.CAData))
	}
	client := kubernetes.NewForConfigOrDie(cfg)

	t.Run("kubeconfig", func(t *testing.T) {
		kcfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kubernetes.NewForConfigOrDie(kcfg).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Errorf("get namespace default through the kubeconfig: %v", err)
		}
	})

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-e2e"}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	t.Run("services", func(t *testing.T) {
		requireDual := corev1.IPFamilyPolicyRequireDualStack
		tests := []struct {
			name     string
			policy   *corev1.IPFamilyPolicy
			families []corev1.IPFamily
		}{
			{name: "single-stack", families: []corev1.IPFamily{corev1.IPv4Protocol}},
			{name: "dual-stack", policy: &requireDual, families: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: ns.Name},
					Spec: corev1.ServiceSpec{
						Type:           corev1.ServiceTypeLoadBalancer,
						IPFamilyPolicy: tc.policy,
						Selector:       map[string]string{"app": tc.name},
						Ports:          []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
					},
				}
				if _, err := client.CoreV1().Services(ns.Name).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					t.Fatalf("create: %v", err)
				}
				got, err := client.CoreV1().Services(ns.Name).Get(ctx, tc.name, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("get: %v", err)
				}
				if diff := cmp.Diff(tc.families, got.Spec.IPFamilies); diff != "" {
					t.Errorf("ipFamilies (-want +got):\n%s", diff)
				}
				if len(got.Spec.ClusterIPs) != len(tc.families) {
					t.Errorf("clusterIPs = %v, want one per family", got.Spec.ClusterIPs)
				}
				if got.Spec.Ports[0].NodePort == 0 {
					t.Errorf("no nodePort allocated: %+v", got.Spec.Ports[0])
				}
			})
		}
	})

	t.Run("node", func(t *testing.T) {
		addrs := []netip.Addr{netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("2001:db8:1::2")}
		if _, err := controlplane.CreateNode(ctx, client, "node-a", addrs...); err != nil {
			t.Fatal(err)
		}
		got, err := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		want := []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "node-a"},
			{Type: corev1.NodeInternalIP, Address: "198.18.1.2"},
			{Type: corev1.NodeInternalIP, Address: "2001:db8:1::2"},
		}
		if diff := cmp.Diff(want, got.Status.Addresses); diff != "" {
			t.Errorf("addresses (-want +got):\n%s", diff)
		}
		ready := slices.IndexFunc(got.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		})
		if ready < 0 {
			t.Errorf("node not Ready: %+v", got.Status.Conditions)
		}
	})

	t.Run("berthippool", func(t *testing.T) {
		// Unstructured on purpose: this checks the CRD YAML as the API
		// server sees it, independent of the generated Go types.
		gvr := schema.GroupVersionResource{Group: "berth.dev", Version: "v1alpha1", Resource: "berthippools"}
		pools := dynamic.NewForConfigOrDie(cfg).Resource(gvr)
		valid := unstructuredIPPool("valid", "198.51.100.0/24")
		if _, err := pools.Create(ctx, valid, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create valid BerthIPPool: %v", err)
		}
		got, err := pools.Get(ctx, "valid", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		addrs, _, err := unstructured.NestedStringSlice(got.Object, "spec", "addresses")
		if err != nil || !slices.Equal(addrs, []string{"198.51.100.0/24"}) {
			t.Errorf("spec.addresses = %v (%v), want [198.51.100.0/24]", addrs, err)
		}

		_, err = pools.Create(ctx, unstructuredIPPool("invalid", "198.51.100.300/24"), metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Errorf("create BerthIPPool with 198.51.100.300/24: got %v, want an Invalid error", err)
		}
	})
}

func unstructuredIPPool(name string, addresses ...string) *unstructured.Unstructured {
	addrs := make([]any, len(addresses))
	for i, a := range addresses {
		addrs[i] = a
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "berth.dev/v1alpha1",
		"kind":       "BerthIPPool",
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"addresses": addrs},
	}}
}

// TestControlPlaneInNetlab checks that an API server bound to a lab's bridge
// serves clients inside the lab's namespaces, and that the lab leaves nothing
// behind.
func TestControlPlaneInNetlab(t *testing.T) {
	netlab.RequireRoot(t)
	var labID string
	t.Run("readyz from a host", func(t *testing.T) {
		lab := netlab.New(t)
		labID = lab.ID
		// This test is about reachability, not Berth's APIs.
		cp := controlplane.StartForTest(t, controlplane.Options{BindAddress: lab.Gateway4, SkipCRDs: true})
		if !strings.Contains(cp.URL(), lab.Gateway4.String()) {
			t.Fatalf("URL %s is not on the bridge address %s", cp.URL(), lab.Gateway4)
		}
		host := lab.AddHost("client")
		// A long-running process inside the namespace, which cleanup must kill.
		sleeper := host.Command(context.Background(), "sleep", "300")
		if err := sleeper.Start(); err != nil {
			t.Fatalf("start sleep in %s: %v", host.Netns, err)
		}
		go func() { _ = sleeper.Wait() }()

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		out, err := host.Exec(ctx, "curl", "-sS", "--max-time", "10", "-k",
			"-H", "Authorization: Bearer "+cp.Token(), cp.URL()+"/readyz")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) != "ok" {
			t.Errorf("readyz from %s = %q, want ok", host.Netns, out)
		}
	})
	if labID == "" {
		return
	}
	namespaces, links, err := netlab.Leftovers(labID)
	if err != nil {
		t.Fatal(err)
	}
	if len(namespaces) > 0 || len(links) > 0 {
		t.Errorf("lab %s left namespaces %v and links %v", labID, namespaces, links)
	}
}
