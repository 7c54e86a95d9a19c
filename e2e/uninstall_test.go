package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/internal/lifecycle"
)

// npUninstall is the NodePort of the uninstall test's Service.
const npUninstall = 30780

// lifecycleArg is what the chart passes the controller and the speakers.
var lifecycleArg = "--lifecycle-configmap=" + lifecycle.DefaultConfigMap

// TestUninstall runs the chart's uninstall path against a real API server
// and real nftables in two nodes' network namespaces, every process under
// the manifests' ServiceAccounts: a plain speaker restart (SIGTERM, start
// again) keeps the node's table and the traffic; then `berth-controller
// uninstall` (the pre-delete hook's command, as ServiceAccount
// berth-uninstall) marks the uninstall, and it returns only once both
// speakers have closed their sessions and deleted their table and drain
// routes (nft list tables shows no berth table) and the controller has
// removed the pool's finalizer; after that stopping the speakers recreates
// nothing, the pool (still holding the Service's address) deletes at once,
// and so do the CRDs.
func TestUninstall(t *testing.T) {
	// Layer 2 off: it would remove the drain route planted below at the
	// first sync, and wait for a membership this lab does not form.
	speakerArgs := []string{"--forwarding=true", "--l2=false", "--drift-check-interval=1s", lifecycleArg}
	fl := newFwdLabWith(t, []string{lifecycleArg}, speakerArgs...)
	top := t // owns restarted speakers, which outlive subtests
	e := fl.e
	if _, err := e.kube.CoreV1().ConfigMaps(berthNS).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: lifecycle.DefaultConfigMap, Namespace: berthNS},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fl.listen(t, "tcp", npUninstall)
	e.namespace(t, "un", nil)
	e.service(t, "un", "web", func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npUninstall}}
	})
	web := e.waitAllocated(t, "un", "web", 1)[0]
	waitAnswer(t, fl.get, web, 80, npUninstall, settle)
	n1, n2 := fl.nodes[0], fl.nodes[1]
	// A drain route as a speaker with layer 2 leaves it.
	drainRoute := []string{"203.0.113.77/32", "via", n2.host.IPv4.String(), "proto", "190"}
	mustExec(t, n1.host, append([]string{"ip", "route", "add"}, drainRoute...)...)
	hasTable := func(n *labNode) bool {
		return slices.Contains(strings.Split(strings.TrimSpace(mustExec(t, n.host, "nft", "list", "tables")), "\n"), "table inet berth")
	}

	t.Run("a plain speaker restart keeps the table and the traffic", func(t *testing.T) {
		n1.speaker.stop(syscall.SIGTERM)
		if tab, ok := nftTable(t, n1); !ok || !strings.Contains(tab, web.String()) {
			t.Fatalf("%s: after SIGTERM (no uninstall) the table is gone or lost %s (exists %v):\n%s", n1.name, web, ok, tab)
		}
		waitAnswer(t, fl.get, web, 80, npUninstall, settle)
		n1.speaker = startSpeaker(t, top, e, n1, speakerArgs...)
		n1.speaker.waitReadyz(t)
		if tab, ok := nftTable(t, n1); !ok || !strings.Contains(tab, web.String()) {
			t.Fatalf("%s: restarted speaker has no table for %s:\n%s", n1.name, web, tab)
		}
		if out := mustExec(t, n1.host, "ip", "route", "show", "proto", "190"); !strings.Contains(out, "203.0.113.77") {
			t.Errorf("%s: the restart removed the drain route: %q", n1.name, out)
		}
		waitAnswer(t, fl.get, web, 80, npUninstall, settle)
	})

	t.Run("the uninstall hook leaves no table, no route and no finalizer", func(t *testing.T) {
		pool, err := e.berth.BerthV1alpha1().IPPools().Get(t.Context(), "main", metav1.GetOptions{})
		if err != nil || !slices.Contains(pool.Finalizers, v1alpha1.PoolFinalizer) {
			t.Fatalf("pool main before the uninstall: finalizers %v, %v", pool.Finalizers, err)
		}
		// The speakers' Pods, as the kubelet reports them: the hook
		// waits for the nodes of the running ones.
		for _, n := range fl.nodes {
			speakerPod(t, e, n.name)
		}
		start := time.Now()
		out, err := runUninstall(t, e, "--speaker-selector=app.kubernetes.io/name=berth-speaker", "--pools", "--timeout=60s")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("berth-controller uninstall: %v\n%s", err, out)
		}
		t.Logf("MEASURED: berth-controller uninstall returned after %v", took.Round(time.Millisecond))
		for _, n := range fl.nodes {
			if hasTable(n) {
				t.Errorf("%s: table inet berth remains after the hook returned", n.name)
			}
			if out := mustExec(t, n.host, "ip", "route", "show", "proto", "190"); strings.TrimSpace(out) != "" {
				t.Errorf("%s: drain routes remain: %q", n.name, out)
			}
		}
		cm, err := e.kube.CoreV1().ConfigMaps(berthNS).Get(t.Context(), lifecycle.DefaultConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := lifecycle.Cleaned(cm); !c[n1.name] || !c[n2.name] {
			t.Errorf("nodes reported cleaned: %v", c)
		}
		waitNoAnswer(t, fl.get, web, 80, settle)
		// Idle, not restarted into forwarding: /readyz says why.
		if body := readyzBody(t, n1.speaker); !strings.Contains(body, "being uninstalled") {
			t.Errorf("%s /readyz after the uninstall: %q", n1.name, body)
		}
		time.Sleep(2 * time.Second) // two drift checks' worth
		for _, n := range fl.nodes {
			n.speaker.stop(syscall.SIGTERM)
			if hasTable(n) {
				t.Errorf("%s: table inet berth is back after the speaker stopped", n.name)
			}
		}
		// A speaker restarted while the mark stands cleans again and idles.
		again := startSpeaker(t, top, e, n1, speakerArgs...)
		poll(t, settle, "restarted speaker to idle", func() error {
			if !strings.Contains(readyzBody(t, again), "being uninstalled") {
				return errors.New("not idle")
			}
			return nil
		})
		if hasTable(n1) {
			t.Errorf("%s: a speaker restarted during the uninstall created the table", n1.name)
		}
		again.stop(syscall.SIGTERM)

		// The pool still holds the Service's address, yet nothing keeps
		// it, nor the CRDs.
		if err := e.berth.BerthV1alpha1().IPPools().Delete(t.Context(), "main", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, settle, "pool main deleted", func() error {
			p, err := e.berth.BerthV1alpha1().IPPools().Get(t.Context(), "main", metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				return nil
			case err != nil:
				return fmt.Errorf("pool main: %w", err)
			}
			return fmt.Errorf("pool main still exists, finalizers %v", p.Finalizers)
		})
		ext := apiextensionsclient.NewForConfigOrDie(e.cp.RESTConfig())
		crds := []string{"ippools.berth.dev", "bgppeers.berth.dev", "bgpadvertisements.berth.dev", "l2advertisements.berth.dev"}
		for _, name := range crds {
			if err := ext.ApiextensionsV1().CustomResourceDefinitions().Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		poll(t, 30*time.Second, "CRDs deleted", func() error {
			for _, name := range crds {
				if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("CRD %s still exists (%v)", name, err) //nolint:errorlint // err may be nil
				}
			}
			return nil
		})
	})
}

// speakerPod marks the Pod object of the speaker on node (the one its
// token is bound to, see speakerKubeconfig) Running, as the kubelet would
// (no kubelet runs here).
func speakerPod(t *testing.T, e *env, node string) {
	t.Helper()
	p, err := controlplane.NodePod(t.Context(), e.kube, berthNS, "berth-speaker", node)
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := e.kube.CoreV1().Pods(berthNS).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// runUninstall runs `berth-controller uninstall` as ServiceAccount
// berth-uninstall (manifests/uninstall's RBAC) and returns its output.
func runUninstall(t *testing.T, e *env, args ...string) (string, error) {
	t.Helper()
	all := append([]string{"uninstall", "--kubeconfig", e.saKubeconfig(t, "berth-uninstall"), "--namespace", berthNS, "-v=2"}, args...)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, berthBins.path(t, "berth-controller"), all...)
	cmd.Env = berthEnviron()
	out, err := cmd.CombinedOutput()
	if s := string(out); isRefusal(s) {
		t.Errorf("berth-controller uninstall was refused a request by RBAC:\n%s", s)
	}
	return string(out), err
}

// readyzBody returns what the speaker's /readyz answers, "" if nothing.
func readyzBody(t *testing.T, p *speakerProc) string {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + p.metrics + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
