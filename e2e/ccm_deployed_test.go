package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

// TestCCMAsDeployed runs berth-ccm with what its Deployment adds to the
// other CCM tests' flags: leader election on the Lease berth-system/berth-ccm,
// and the HTTPS endpoint with delegated authentication and authorization
// (which, in a Pod, use the ServiceAccount's in-cluster credentials). So the
// RBAC for those, the Lease Role, system:auth-delegator and the
// extension-apiserver-authentication reader, is exercised too: the Service
// gets its address only once the Lease is held, and /metrics answers an
// authorized client only if berth-ccm could review its token and access.
// It runs with the rules the pools backend needs only.
func TestCCMAsDeployed(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := controlplane.CreateNode(ctx, e.kube, "node-1", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	e.pool(t, "ccm", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.10-203.0.113.12"}})
	kubeconfig := e.saKubeconfig(t, "berth-ccm")
	// The pools backend needs none of the aws backend's rules (Node patch,
	// EndpointSlices): run it without them, as a chart rendered for the
	// pools backend may install it.
	dir, err := controlplane.ManifestsDir()
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := controlplane.LoadRBAC(dir, berthNS, "berth-ccm")
	if err != nil {
		t.Fatal(err)
	}
	for _, rv := range [][2]string{{"nodes", "patch"}, {"endpointslices", "list"}, {"endpointslices", "watch"}} {
		rbac, _ = trimRBAC(rbac, rv[0], rv[1])
	}
	applyRBAC(t, e, rbac)
	certDir := t.TempDir()
	_, ports := e.startCCMOnPorts(t, "backend: pools\n", nil, 1, func(ports []int) []string {
		return []string{
			"--leader-elect=true",
			"--leader-elect-resource-namespace=" + berthNS,
			"--leader-elect-resource-name=berth-ccm",
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", ports[1]),
			"--cert-dir=" + certDir,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
		}
	})
	port := ports[1]
	start := time.Now()
	e.service(t, "default", "web")
	e.waitIngress(t, "default", "web", "203.0.113.10")
	t.Logf("address in status after %v", time.Since(start).Round(time.Millisecond))
	lease, err := e.kube.CoordinationV1().Leases(berthNS).Get(ctx, "berth-ccm", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Fatalf("Lease %s/berth-ccm: %v, %+v", berthNS, err, lease)
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a self-signed serving certificate
	}}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{path: "/healthz", want: http.StatusOK},
		// Reviewed by the API server on berth-ccm's behalf (TokenReview
		// and SubjectAccessReview).
		{path: "/metrics", token: e.cp.Token(), want: http.StatusOK},
		{path: "/metrics", want: http.StatusForbidden},
	} {
		var got int
		took := poll(t, 10*time.Second, fmt.Sprintf("GET %s (token %v) answers %d", tc.path, tc.token != "", tc.want), func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", port, tc.path), nil)
			if err != nil {
				return err
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			if got = resp.StatusCode; got != tc.want {
				return fmt.Errorf("status %d", got)
			}
			return nil
		})
		t.Logf("GET %s (token %v): %d after %v", tc.path, tc.token != "", got, took.Round(time.Millisecond))
	}
}
