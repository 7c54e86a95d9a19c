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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
)

// TestControllerForeign runs berth-controller (classed Services only) and
// berth-ccm (unclassed ones) on one pool: each records the addresses the
// other gave, so no address is ever given twice, across a restart of the
// controller too, and a full pool is full for both.
func TestControllerForeign(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const ns = "default"
	if _, err := controlplane.CreateNode(ctx, e.kube, "node-1", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	e.pool(t, "shared", v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.20-203.0.113.27"}})
	top := t // processes restarted in a subtest must outlive it
	ctrl := e.startController(top, "--handle-unclassed=false")
	ctrl.waitReady(t)
	e.startCCM(top)

	// Each allocator learns the other's addresses from its own watch of
	// Services. Two Services created at the same instant, one for each,
	// can still race; this test is about everything else, so it gives a
	// new address a moment to reach both before the next Service.
	settle := func() { time.Sleep(300 * time.Millisecond) }
	ccmService := func(t *testing.T, name string) netip.Addr {
		t.Helper()
		e.service(t, ns, name)
		s := e.waitService(t, ns, name, "an address from berth-ccm", func(s *corev1.Service) bool { return len(addrs(s)) == 1 })
		settle()
		return addrs(s)[0]
	}
	classedService := func(t *testing.T, name string) netip.Addr {
		t.Helper()
		e.service(t, ns, name, withClass("berth.dev/lb"))
		a := e.waitAllocated(t, ns, name, 1)[0]
		settle()
		return a
	}

	held := map[string]netip.Addr{}
	t.Run("alternating Services get distinct addresses", func(t *testing.T) {
		for i := range 3 {
			held[fmt.Sprintf("ccm-%d", i)] = ccmService(t, fmt.Sprintf("ccm-%d", i))
			held[fmt.Sprintf("ctl-%d", i)] = classedService(t, fmt.Sprintf("ctl-%d", i))
		}
		e.checkDistinct(t, ns, held)
		for _, name := range []string{"ccm-0", "ccm-1", "ccm-2"} {
			if s, err := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err == nil && condition(s) != nil {
				t.Errorf("berth-controller wrote its condition on %s, a Service it does not handle: %+v", name, condition(s))
			}
		}
	})

	t.Run("restart of the controller", func(t *testing.T) {
		ctrl.stop(syscall.SIGTERM)
		// While it is down, berth-ccm gives out another address; it knows
		// the controller's.
		held["ccm-3"] = ccmService(t, "ccm-3")
		rvs := e.resourceVersions(t, ns)
		ctrl = e.startController(top, "--handle-unclassed=false")
		ctrl.waitReady(t)
		held["ctl-3"] = classedService(t, "ctl-3")
		e.checkDistinct(t, ns, held)
		time.Sleep(time.Second)
		after := e.resourceVersions(t, ns)
		for name, rv := range rvs {
			if after[name] != rv {
				s, _ := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
				t.Errorf("%s was written after the restart (resourceVersion %s -> %s): %s", name, rv, after[name], statusString(s))
			}
		}
	})

	t.Run("a pool full of both is full for the controller", func(t *testing.T) {
		e.waitPool(t, "shared", "8 of 8 used by 8 holders", func(p *v1alpha1.IPPool) bool {
			return p.Status.IPv4 != nil && p.Status.IPv4.Used == "8" && p.Status.IPv4.Free == "0" && p.Status.HolderCount == 8
		})
		e.service(t, ns, "ctl-extra", withClass("berth.dev/lb"))
		e.waitPending(t, ns, "ctl-extra", v1alpha1.ReasonPoolExhausted)
		e.checkDistinct(t, ns, held)
	})

	t.Run("a deleted berth-ccm Service frees its address for the controller", func(t *testing.T) {
		freed := held["ccm-0"]
		if err := e.kube.CoreV1().Services(ns).Delete(ctx, "ccm-0", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		delete(held, "ccm-0")
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := e.kube.CoreV1().Services(ns).Get(ctx, "ccm-0", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("ccm-0 not deleted: %v", err)
		}
		// A pending Service is looked at again when it changes.
		patch := `{"metadata":{"annotations":{"e2e/poke":"1"}}}`
		if _, err := e.kube.CoreV1().Services(ns).Patch(ctx, "ctl-extra", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := e.waitAllocated(t, ns, "ctl-extra", 1); got[0] != freed {
			t.Errorf("ctl-extra got %v, want %s, the address ccm-0 had", got, freed)
		}
		held["ctl-extra"] = freed
		e.checkDistinct(t, ns, held)
	})
}

// checkDistinct checks that the Services in ns show exactly the addresses
// of want, by name, and none twice.
func (e *env) checkDistinct(t *testing.T, ns string, want map[string]netip.Addr) {
	t.Helper()
	list, err := e.kube.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	by := map[netip.Addr][]string{}
	for _, s := range list.Items {
		for _, a := range addrs(&s) {
			by[a] = append(by[a], s.Name)
		}
		if w, ok := want[s.Name]; ok && (len(addrs(&s)) != 1 || addrs(&s)[0] != w) {
			t.Errorf("%s shows %v, want %s", s.Name, addrs(&s), w)
		}
	}
	for a, names := range by {
		if len(names) > 1 {
			t.Errorf("%s is given to %s", a, strings.Join(names, " and "))
		}
	}
}
