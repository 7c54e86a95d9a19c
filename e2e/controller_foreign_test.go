package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
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
//
// The two allocate independently and learn of each other's addresses from
// their own watch of Services, so two Services created within that
// fraction of a second, one for each, can get the same address: the
// controller's then moves (ledger.YieldToForeign), which
// TestControllerForeignSameInstant tests. This test gives each new address
// to the other component before the next Service is created, waiting for
// proof that the other recorded it (the controller's pool status naming
// the holder; berth-ccm's log line at -v=4), so that nothing moves, and
// then checks the invariant over a polled window rather than once.
func TestControllerForeign(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const ns = "default"
	if _, err := controlplane.CreateNode(ctx, e.kube, "node-1", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	e.pool(t, "shared", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.20-203.0.113.27"}})
	top := t // processes restarted in a subtest must outlive it
	held := map[string]netip.Addr{}
	ctrl := e.startController(top, "--handle-unclassed=false")
	ctrl.waitReady(t)
	ccm := e.startCCMWith(top, "backend: pools\n", nil, "--v=4")

	ccmService := func(t *testing.T, name string) netip.Addr {
		t.Helper()
		e.service(t, ns, name)
		s := e.waitService(t, ns, name, "an address from berth-ccm", func(s *corev1.Service) bool { return len(addrs(s)) == 1 })
		return addrs(s)[0]
	}
	// The controller has recorded a berth-ccm Service's address when the
	// pool's status, which it writes from its records, names the Service.
	controllerHolds := func(t *testing.T, name string) {
		t.Helper()
		e.waitPool(t, "shared", "berth-controller holding the address of "+name, func(p *v1alpha1.BerthIPPool) bool {
			return slices.Contains(p.Status.Holders, ns+"/"+name)
		})
	}
	// berth-ccm logs what it holds for others after each Service event.
	classedService := func(t *testing.T, name string) netip.Addr {
		t.Helper()
		e.service(t, ns, name, withClass("berth.dev/lb"))
		a := e.waitAllocated(t, ns, name, 1)[0]
		poll(t, 20*time.Second, "berth-ccm holding "+a.String()+" for "+name, func() error {
			if !ccm.loggedLine("Holding another implementation's addresses", `service="`+ns+"/"+name+`"`, a.String()) {
				return fmt.Errorf("not logged; last lines:\n%s", ccm.tail(5))
			}
			return nil
		})
		return a
	}
	// The invariant, held over a window long enough for either side to
	// have acted on every event: no address twice, every Service as held.
	holdDistinct := func(t *testing.T) {
		t.Helper()
		holdsFor(t, 3*time.Second, "every address given once", func() error { return e.distinct(t, ns, held) })
	}

	t.Run("alternating Services get distinct addresses", func(t *testing.T) {
		for i := range 3 {
			held[fmt.Sprintf("ccm-%d", i)] = ccmService(t, fmt.Sprintf("ccm-%d", i))
			controllerHolds(t, fmt.Sprintf("ccm-%d", i))
			held[fmt.Sprintf("ctl-%d", i)] = classedService(t, fmt.Sprintf("ctl-%d", i))
		}
		holdDistinct(t)
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
		controllerHolds(t, "ccm-3") // replayed
		held["ctl-3"] = classedService(t, "ctl-3")
		// The controller was ready (replay done) before ctl-3 was
		// created and has served it since: no Service it replayed may be
		// written, now or in the window.
		holdsFor(t, 3*time.Second, "no Service rewritten after the restart", func() error {
			after := e.resourceVersions(t, ns)
			for name, rv := range rvs {
				if after[name] != rv {
					s, _ := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
					return fmt.Errorf("%s was written after the restart (resourceVersion %s -> %s): %s", name, rv, after[name], statusString(s))
				}
			}
			return e.distinct(t, ns, held)
		})
	})

	t.Run("a pool full of both is full for the controller", func(t *testing.T) {
		e.waitPool(t, "shared", "8 of 8 used by 8 holders", func(p *v1alpha1.BerthIPPool) bool {
			return p.Status.IPv4 != nil && p.Status.IPv4.Used == "8" && p.Status.IPv4.Free == "0" && p.Status.HolderCount == 8
		})
		e.service(t, ns, "ctl-extra", withClass("berth.dev/lb"))
		e.waitPending(t, ns, "ctl-extra", v1alpha1.ReasonPoolExhausted)
		holdDistinct(t)
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
		holdDistinct(t)
	})
}

// distinct checks that the Services in ns show exactly the addresses of
// want, by name, and none twice.
func (e *env) distinct(t *testing.T, ns string, want map[string]netip.Addr) error {
	list, err := e.kube.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	by := map[netip.Addr][]string{}
	var errs []error
	for _, s := range list.Items {
		for _, a := range addrs(&s) {
			by[a] = append(by[a], s.Name)
		}
		if w, ok := want[s.Name]; ok && (len(addrs(&s)) != 1 || addrs(&s)[0] != w) {
			errs = append(errs, fmt.Errorf("%s shows %v, want %s", s.Name, addrs(&s), w))
		}
	}
	for a, names := range by {
		if len(names) > 1 {
			errs = append(errs, fmt.Errorf("%s is given to %s", a, strings.Join(names, " and ")))
		}
	}
	return errors.Join(errs...)
}
