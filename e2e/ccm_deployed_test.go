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
func TestCCMAsDeployed(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := controlplane.CreateNode(ctx, e.kube, "node-1", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	e.pool(t, "ccm", v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.10-203.0.113.12"}})
	kubeconfig := e.saKubeconfig(t, "berth-ccm")
	port := freePort(t)
	e.startCCMWith(t, "backend: pools\n", nil,
		"--leader-elect=true",
		"--leader-elect-resource-namespace="+berthNS,
		"--leader-elect-resource-name=berth-ccm",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir="+t.TempDir(),
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
	)
	e.service(t, "default", "web")
	e.waitIngress(t, "default", "web", "203.0.113.10")
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
		poll(t, 10*time.Second, fmt.Sprintf("GET %s (token %v) answers %d", tc.path, tc.token != "", tc.want), func() error {
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
	}
}
