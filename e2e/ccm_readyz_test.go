package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

// TestCCMReadyz checks berth-ccm's /readyz (the chart's readiness probe)
// with two replicas under leader election, as deployed: the leader is not
// ready while it cannot load the BerthIPPools (its ServiceAccount may not list
// them yet) and says so, the standby is ready to take over, and the leader
// turns ready once the shipped RBAC lets it load and replay, after which it
// serves a Service.
func TestCCMReadyz(t *testing.T) {
	e := newEnv(t)
	e.pool(t, "ccm", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.20-203.0.113.21"}})
	e.saKubeconfig(t, "berth-ccm") // the shipped RBAC and a token, once
	dir, err := controlplane.ManifestsDir()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := controlplane.LoadRBAC(dir, berthNS, "berth-ccm")
	if err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, e, withoutVerb(t, shipped, "berthippools", "list"))
	start := func() (*proc, string) {
		p, ports := e.startCCMOnPorts(t, "backend: pools\n", nil, 0, func([]int) []string {
			return []string{
				"--leader-elect=true",
				"--leader-elect-resource-namespace=" + berthNS,
				"--leader-elect-resource-name=berth-ccm",
			}
		})
		p.mayBeRefused = true // the BerthIPPool list, on purpose
		return p, fmt.Sprintf("127.0.0.1:%d", ports[0])
	}
	readyz := func(addr string) (int, string) {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	waitReadyz := func(what, addr string, code int, body string) {
		t.Helper()
		took := poll(t, 60*time.Second, what, func() error {
			if got, b := readyz(addr); got != code || !strings.Contains(b, body) {
				return fmt.Errorf("/readyz answers %d %q", got, b)
			}
			return nil
		})
		t.Logf("%s after %v", what, took.Round(time.Millisecond))
	}

	_, leader := start()
	waitReadyz("the leader, unable to list BerthIPPools, is not ready", leader, http.StatusServiceUnavailable, "still loading BerthIPPools")
	_, standby := start()
	// Twice, a second apart: a standby stays ready.
	for range 2 {
		waitReadyz("the standby is ready", standby, http.StatusOK, "ok")
		time.Sleep(time.Second)
	}
	if code, b := readyz(leader); code != http.StatusServiceUnavailable {
		t.Errorf("leader /readyz while the standby runs: %d %q", code, b)
	}
	applyRBAC(t, e, shipped)
	waitReadyz("the leader, allowed to list BerthIPPools, is ready", leader, http.StatusOK, "ok")
	e.service(t, "default", "web")
	e.waitIngress(t, "default", "web", "203.0.113.20")
}
