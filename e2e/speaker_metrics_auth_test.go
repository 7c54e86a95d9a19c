package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthlb/berth/e2e/controlplane"
)

// TestSpeakerMetricsAuth runs a speaker with --metrics-secure, as the chart
// does, as ServiceAccount berth-speaker with the manifests' RBAC, against
// the real API server: /metrics answers 401 without a token the API server
// accepts, 403 to a token whose user may not get /metrics, and 200 to one
// bound to the manifests' ClusterRole berth-metrics-reader; the health
// endpoints stay open, and plain HTTP gets nothing.
func TestSpeakerMetricsAuth(t *testing.T) {
	sl := newSpeakerLab(t, 1)
	sl.startSpeakers("--metrics-secure", "--bgp=false", "--l2=false")
	n := sl.nodes[0]
	scraper := tokenOf(t, scraperKubeconfig(t, sl.e.cp, "monitoring", "prometheus"))
	strangerCfg, err := sl.e.cp.TokenKubeconfig(t.Context(), "monitoring", "stranger")
	if err != nil {
		t.Fatal(err)
	}
	stranger := tokenOf(t, strangerCfg)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The speaker's certificate is self-signed, as with kube-rbac-proxy.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
	get := func(scheme, path, token string) (int, string, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, scheme+"://"+n.speaker.metrics+path, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	poll(t, 30*time.Second, "the speaker's HTTPS /healthz answers", func() error {
		code, _, err := get("https", "/healthz", "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	tests := []struct {
		name, path, token string
		want              int
		wantBody          string
	}{
		{name: "no token", path: "/metrics", want: http.StatusUnauthorized},
		{name: "a token the API server does not know", path: "/metrics", token: "not-a-token", want: http.StatusUnauthorized},
		{name: "a token without the role", path: "/metrics", token: stranger, want: http.StatusForbidden},
		{name: "a token with the role", path: "/metrics", token: scraper, want: http.StatusOK, wantBody: "berth_speaker_"},
		{name: "healthz stays open", path: "/healthz", want: http.StatusOK},
		{name: "readyz stays open", path: "/readyz", want: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// /readyz waits for the first sync.
			poll(t, 30*time.Second, tc.path+" answers as it should", func() error {
				code, body, err := get("https", tc.path, tc.token)
				if err != nil {
					return err
				}
				if code != tc.want || !strings.Contains(body, tc.wantBody) {
					return fmt.Errorf("status %d, want %d; body %.200q", code, tc.want, body)
				}
				return nil
			})
		})
	}
	if code, body, err := get("http", "/metrics", scraper); err == nil && code == http.StatusOK {
		t.Errorf("plain HTTP served /metrics: %.200q", body)
	}
}

// scraperKubeconfig returns a kubeconfig for ServiceAccount namespace/name
// bound (by a ClusterRoleBinding the test adds) to the ClusterRole
// berth-metrics-reader as the manifests define it.
func scraperKubeconfig(t *testing.T, cp *controlplane.ControlPlane, namespace, name string) string {
	t.Helper()
	dir, err := controlplane.ManifestsDir()
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := os.ReadFile(filepath.Join(dir, "speaker", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	binding := fmt.Sprintf(`---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: %[2]s
  namespace: %[1]s
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: %[2]s-metrics
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: berth-metrics-reader
subjects:
- kind: ServiceAccount
  name: %[2]s
  namespace: %[1]s
`, namespace, name)
	if err := os.WriteFile(filepath.Join(tmp, "rbac.yaml"), append(rbac, binding...), 0o600); err != nil {
		t.Fatal(err)
	}
	path, err := cp.ServiceAccountKubeconfigFrom(t.Context(), tmp, namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// tokenOf returns the bearer token of a kubeconfig's current user.
func tokenOf(t *testing.T, kubeconfig string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	token := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo].Token
	if token == "" {
		t.Fatalf("kubeconfig %s has no token", kubeconfig)
	}
	return token
}
