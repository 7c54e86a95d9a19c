package e2e

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

// TestCCMReadyz checks berth-ccm's probes, at the path and on the port
// (the flag that sets it) the chart's Deployment gives them, with two
// replicas under leader election, as deployed: the leader is not ready
// while it cannot load the IPPools (its ServiceAccount may not list them
// yet) and says so, the standby is ready to take over, and the leader
// turns ready once the shipped RBAC lets it load and replay, after which it
// serves a Service. Both are alive throughout: a replica still loading is
// not restarted.
func TestCCMReadyz(t *testing.T) {
	liveness, readiness := chartCCMProbes(t)
	for _, p := range []ccmProbe{liveness, readiness} {
		// The port the tests' berth-ccm serves on 127.0.0.1 (startCCMOnPorts).
		if p.flag != "--readyz-address" || p.scheme != "HTTP" {
			t.Fatalf("the chart probes %+v; this test reaches only HTTP on --readyz-address", p)
		}
	}
	e := newEnv(t)
	e.pool(t, "ccm", v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.20-203.0.113.21"}})
	e.saKubeconfig(t, "berth-ccm") // the shipped RBAC and a token, once
	dir, err := controlplane.ManifestsDir()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := controlplane.LoadRBAC(dir, berthNS, "berth-ccm")
	if err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, e, withoutVerb(t, shipped, "ippools", "list"))
	start := func() (*proc, string) {
		p, ports := e.startCCMOnPorts(t, "backend: pools\n", nil, 0, func([]int) []string {
			return []string{
				"--leader-elect=true",
				"--leader-elect-resource-namespace=" + berthNS,
				"--leader-elect-resource-name=berth-ccm",
			}
		})
		p.mayBeRefused = true // the IPPool list, on purpose
		return p, fmt.Sprintf("127.0.0.1:%d", ports[0])
	}
	get := func(addr, path string) (int, string) {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	readyz := func(addr string) (int, string) { return get(addr, readiness.path) }
	waitReadyz := func(what, addr string, code int, body string) {
		t.Helper()
		took := poll(t, 60*time.Second, what, func() error {
			if got, b := readyz(addr); got != code || !strings.Contains(b, body) {
				return fmt.Errorf("%s answers %d %q", readiness.path, got, b)
			}
			return nil
		})
		t.Logf("%s after %v", what, took.Round(time.Millisecond))
	}
	requireAlive := func(what, addr string) {
		t.Helper()
		if code, b := get(addr, liveness.path); code != http.StatusOK {
			t.Errorf("%s: %s answers %d %q", what, liveness.path, code, b)
		}
	}

	_, leader := start()
	waitReadyz("the leader, unable to list IPPools, is not ready", leader, http.StatusServiceUnavailable, "still loading IPPools")
	_, standby := start()
	// Twice, a second apart: a standby stays ready.
	for range 2 {
		waitReadyz("the standby is ready", standby, http.StatusOK, "ok")
		time.Sleep(time.Second)
	}
	if code, b := readyz(leader); code != http.StatusServiceUnavailable {
		t.Errorf("leader /readyz while the standby runs: %d %q", code, b)
	}
	requireAlive("the leader, not ready", leader)
	requireAlive("the standby", standby)
	applyRBAC(t, e, shipped)
	waitReadyz("the leader, allowed to list IPPools, is ready", leader, http.StatusOK, "ok")
	requireAlive("the leader, ready", leader)
	e.service(t, "default", "web")
	e.waitIngress(t, "default", "web", "203.0.113.20")
}

// ccmProbe is where the chart's berth-ccm Deployment points a probe: the
// scheme and path, and the berth-ccm flag whose address has the probe's
// port.
type ccmProbe struct{ scheme, path, flag string }

// chartCCMProbes reads berth-ccm's liveness and readiness probes from the
// rendered chart (manifests/ccm), so that the tests reach the endpoints
// the kubelet would.
func chartCCMProbes(t *testing.T) (liveness, readiness ccmProbe) {
	t.Helper()
	dir, err := controlplane.ManifestsDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "ccm", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(b, &d); err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	target := func(kind string, p *corev1.Probe) ccmProbe {
		if p == nil || p.HTTPGet == nil {
			t.Fatalf("berth-ccm has no HTTP %s probe", kind)
		}
		port := p.HTTPGet.Port.IntValue()
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.String() {
				port = int(cp.ContainerPort)
			}
		}
		for _, a := range c.Args {
			if flag, addr, ok := strings.Cut(a, "="); ok && (addr == strconv.Itoa(port) || strings.HasSuffix(addr, ":"+strconv.Itoa(port))) {
				return ccmProbe{scheme: string(cmp.Or(p.HTTPGet.Scheme, corev1.URISchemeHTTP)), path: p.HTTPGet.Path, flag: flag}
			}
		}
		t.Fatalf("berth-ccm's %s probe is on port %v, which no flag sets: %v", kind, p.HTTPGet.Port, c.Args)
		return ccmProbe{}
	}
	return target("liveness", c.LivenessProbe), target("readiness", c.ReadinessProbe)
}
