package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestControllerRestart checks that a restarted controller moves no valid
// address and writes nothing, and that when two Services claim one address
// the older keeps it.
func TestControllerRestart(t *testing.T) {
	e := newEnv(t)
	e.namespace(t, "rs", nil)
	e.pool(t, "rs", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/26", "2001:db8:5::/120"}})
	ctrl := e.startController(t)
	ctrl.waitReady(t)

	const n = 20
	before := map[string][]netip.Addr{}
	for i := range n {
		opts := []svcOpt{}
		if i%3 == 0 {
			opts = append(opts, withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
		}
		e.service(t, "rs", fmt.Sprintf("s%02d", i), opts...)
	}
	for i := range n {
		name := fmt.Sprintf("s%02d", i)
		want := 1
		if i%3 == 0 {
			want = 2
		}
		before[name] = e.waitAllocated(t, "rs", name, want)
	}
	ctrl.stop(syscall.SIGTERM)

	// While the controller is down, someone copies s01's address onto the
	// newer s19 by hand.
	victim := before["s01"][0]
	patch := fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, victim)
	if _, err := e.kube.CoreV1().Services("rs").Patch(t.Context(), "s19", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("hand-edit s19: %v", err)
	}
	rvs := e.resourceVersions(t, "rs")

	ctrl = e.startController(t)
	ctrl.waitReady(t)
	got := e.waitService(t, "rs", "s19", "a new address", func(s *corev1.Service) bool {
		a := addrs(s)
		return len(a) == 1 && a[0] != victim && condition(s) != nil && condition(s).Status == metav1.ConditionTrue
	})
	if ev := e.events(t, "rs", "s19", "AddressChanged"); len(ev) == 0 || !strings.Contains(ev[0], victim.String()) {
		t.Errorf("AddressChanged events on s19 = %q, want one naming %s", ev, victim)
	}
	t.Logf("s19 moved from %s to %v", victim, addrs(got))

	// Give the controller time to do anything it would do, then check that
	// nothing else was touched.
	time.Sleep(time.Second)
	after := e.resourceVersions(t, "rs")
	for name, rv := range rvs {
		if name == "s19" {
			continue
		}
		if after[name] != rv {
			s, _ := e.kube.CoreV1().Services("rs").Get(t.Context(), name, metav1.GetOptions{})
			t.Errorf("%s was written after the restart (resourceVersion %s -> %s): %s", name, rv, after[name], statusString(s))
		}
	}
	for name, want := range before {
		if name == "s19" {
			continue
		}
		s, _ := e.kube.CoreV1().Services("rs").Get(t.Context(), name, metav1.GetOptions{})
		if got := addrs(s); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: addresses %v after restart, want %v", name, got, want)
		}
	}
	if w := ctrl.metric(t, "berth_service_status_writes_total"); w != "1" {
		t.Errorf("status writes after restart = %s, want 1 (only s19)", w)
	}
}

// TestLeaderElection runs two replicas with leader election, kills the
// leader while Services are being created, and checks that every Service
// gets an address and that no address is handed out twice.
func TestLeaderElection(t *testing.T) {
	e := newEnv(t)
	e.namespace(t, "berth-system", nil)
	e.namespace(t, "le", nil)
	e.pool(t, "le", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.0/24"}})
	args := []string{"--leader-elect", "--leader-election-namespace=berth-system",
		"--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms", "--leader-elect-retry-period=250ms"}
	a := e.startController(t, args...)
	b := e.startController(t, args...)
	var leader, standby *controllerProc
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		switch {
		case a.logged("Became leader"):
			leader, standby = a, b
		case b.logged("Became leader"):
			leader, standby = b, a
		}
		return leader != nil, nil
	})
	if err != nil {
		t.Fatal("no replica became leader")
	}

	const n = 120
	for i := range n {
		if i == n/2 {
			leader.stop(syscall.SIGKILL)
		}
		e.service(t, "le", fmt.Sprintf("s%03d", i))
	}
	seen := map[netip.Addr]string{}
	for i := range n {
		name := fmt.Sprintf("s%03d", i)
		got := e.waitAllocated(t, "le", name, 1)
		if other, dup := seen[got[0]]; dup {
			t.Errorf("%s and %s both hold %s", other, name, got[0])
		}
		seen[got[0]] = name
	}
	if !standby.logged("Became leader") {
		t.Errorf("the standby never took over, yet all Services were served")
	}
}

func (e *env) resourceVersions(t *testing.T, ns string) map[string]string {
	t.Helper()
	list, err := e.kube.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Name] = s.ResourceVersion
	}
	return out
}
