package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestControllerPromises reproduces, one by one, the broken promises of
// issue 12 that TestControllerModel finds at random: each subtest is the
// shortest sequence that shows one.
func TestControllerPromises(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, ns := range []string{"wake", "replay", "keep", "honest"} {
		e.namespace(t, ns, nil)
	}

	// A Service waiting for an address gets it within a second of its
	// release, whatever releases it.
	t.Run("waiting Service gets a freed address", func(t *testing.T) {
		ctrl := e.startController(t)
		ctrl.waitReady(t)
		e.pool(t, "wake", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.10"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"wake"}}})
		const freed = "198.51.100.10"
		for _, tc := range []struct {
			name    string
			waiter  []svcOpt
			reason  string
			release func(t *testing.T, holder string)
		}{
			{"holder deleted", nil, v1alpha1.ReasonPoolExhausted, func(t *testing.T, holder string) {
				if err := e.kube.CoreV1().Services("wake").Delete(ctx, holder, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}},
			{"holder changed to ClusterIP", nil, v1alpha1.ReasonPoolExhausted, func(t *testing.T, holder string) {
				e.updateService(t, "wake", holder, toClusterIP)
			}},
			{"holder of a requested address deleted", []svcOpt{withAnnotation(v1alpha1.AnnotationAddresses, freed)},
				v1alpha1.ReasonRequestedAddressUnavailable, func(t *testing.T, holder string) {
					if err := e.kube.CoreV1().Services("wake").Delete(ctx, holder, metav1.DeleteOptions{}); err != nil {
						t.Fatal(err)
					}
				}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.clearNamespace(t, "wake") // every case starts from an empty pool
				slug := strings.ToLower(strings.ReplaceAll(tc.name, " ", "-"))
				holder, waiter := "holder-"+slug, "waiter-"+slug
				e.service(t, "wake", holder)
				if got := e.waitAllocated(t, "wake", holder, 1); got[0] != mustAddr(freed) {
					t.Fatalf("%s got %v, want %s", holder, got, freed)
				}
				e.service(t, "wake", waiter, tc.waiter...)
				e.waitPending(t, "wake", waiter, tc.reason)
				start := time.Now()
				tc.release(t, holder)
				e.waitService(t, "wake", waiter, "the freed address "+freed, func(s *corev1.Service) bool {
					c := condition(s)
					return slices.Equal(addrs(s), []netip.Addr{mustAddr(freed)}) && c != nil && c.Status == metav1.ConditionTrue
				})
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("%s got %s only %v after the release, want within a second", waiter, freed, d.Round(time.Millisecond))
				}
				t.Logf("%s got %s %v after the release", waiter, freed, time.Since(start).Round(time.Millisecond))
			})
		}
	})

	// Restart replay restores every valid address before it serves
	// anything: the older Service whose address became reserved while
	// the controller was down moves to a free address, not to the
	// younger's.
	t.Run("restart moves no valid address", func(t *testing.T) {
		e.pool(t, "replay", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.20-198.51.100.22"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"replay"}}})
		ctrl := e.startController(t)
		ctrl.waitReady(t)
		e.service(t, "replay", "older")
		older := e.waitAllocated(t, "replay", "older", 1)[0]
		time.Sleep(1100 * time.Millisecond) // creation timestamps have a resolution of one second
		e.service(t, "replay", "younger")
		younger := e.waitAllocated(t, "replay", "younger", 1)[0]
		ctrl.stop(syscall.SIGTERM)
		e.updatePool(t, "replay", func(s *v1alpha1.BerthIPPoolSpec) {
			s.Reserved = []v1alpha1.AddressRange{v1alpha1.AddressRange(older.String())}
		})
		ctrl = e.startController(t)
		ctrl.waitReady(t)
		got := e.waitService(t, "replay", "older", "an address other than the reserved "+older.String(), func(s *corev1.Service) bool {
			a := addrs(s)
			return len(a) == 1 && a[0] != older
		})
		time.Sleep(time.Second) // anything the controller would still do
		y, err := e.kube.CoreV1().Services("replay").Get(ctx, "younger", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a := addrs(y); len(a) != 1 || a[0] != younger {
			t.Errorf("younger moved from %s to %v across the restart (older now %v); a valid address must never move", younger, a, addrs(got))
		}
		if a := addrs(got); a[0] != mustAddr("198.51.100.22") {
			t.Errorf("older got %v, want the free 198.51.100.22", a)
		}
	})

	// An address kept through an invalid annotation is rebuilt from the
	// status at a restart, not lost and handed to the next Service.
	t.Run("address kept through an invalid edit survives a restart", func(t *testing.T) {
		e.pool(t, "keep", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.30-198.51.100.31"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"keep"}}})
		ctrl := e.startController(t)
		ctrl.waitReady(t)
		e.service(t, "keep", "kept")
		kept := e.waitAllocated(t, "keep", "kept", 1)[0]
		e.updateService(t, "keep", "kept", func(s *corev1.Service) {
			metav1.SetMetaDataAnnotation(&s.ObjectMeta, v1alpha1.AnnotationAddresses, "not-an-ip")
		})
		e.waitService(t, "keep", "kept", "InvalidRequest, keeping "+kept.String(), func(s *corev1.Service) bool {
			c := condition(s)
			return c != nil && c.Reason == v1alpha1.ReasonInvalidRequest && slices.Equal(addrs(s), []netip.Addr{kept})
		})
		ctrl.stop(syscall.SIGTERM)
		ctrl = e.startController(t)
		ctrl.waitReady(t)
		e.service(t, "keep", "next")
		next := e.waitAllocated(t, "keep", "next", 1)[0]
		time.Sleep(time.Second)
		s, err := e.kube.CoreV1().Services("keep").Get(ctx, "kept", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(addrs(s), []netip.Addr{kept}) {
			t.Errorf("kept lost %s across the restart: %s", kept, statusString(s))
		}
		if next == kept {
			t.Errorf("the new Service was given %s, which kept still holds", kept)
		}
	})

	// A PreferDualStack Service whose requested IPv6 address is held by
	// another Service is not Allocated with IPv4 alone: the condition says
	// which address is missing.
	t.Run("requested address held elsewhere is not silently dropped", func(t *testing.T) {
		e.pool(t, "honest", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.40-203.0.113.41", "2001:db8:c::1-2001:db8:c::2"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"honest"}}})
		ctrl := e.startController(t)
		ctrl.waitReady(t)
		const wanted = "2001:db8:c::1"
		e.service(t, "honest", "holder", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol),
			withAnnotation(v1alpha1.AnnotationAddresses, wanted))
		e.waitAllocated(t, "honest", "holder", 1)
		e.service(t, "honest", "dual", withFamilies(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol),
			withAnnotation(v1alpha1.AnnotationAddresses, "203.0.113.40, "+wanted))
		e.waitService(t, "honest", "dual", "a condition", func(s *corev1.Service) bool { return condition(s) != nil })
		time.Sleep(500 * time.Millisecond) // the condition it settles on
		s, err := e.kube.CoreV1().Services("honest").Get(ctx, "dual", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := condition(s)
		if c.Reason == v1alpha1.ReasonAllocated || c.Status == metav1.ConditionTrue {
			t.Errorf("dual is %s/%s without its requested %s: %s", c.Status, c.Reason, wanted, statusString(s))
		}
		if !strings.Contains(c.Message, wanted) {
			t.Errorf("the condition's message does not name the missing %s: %q", wanted, c.Message)
		}
	})
}

// toClusterIP turns a Service into a ClusterIP one, clearing the fields
// only a LoadBalancer may have.
func toClusterIP(s *corev1.Service) {
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.LoadBalancerClass = nil
	s.Spec.LoadBalancerIP = ""
	s.Spec.ExternalTrafficPolicy = ""
	s.Spec.HealthCheckNodePort = 0
	s.Spec.AllocateLoadBalancerNodePorts = nil
	for i := range s.Spec.Ports {
		s.Spec.Ports[i].NodePort = 0
	}
}

// updateService changes a Service's spec or metadata, retrying on
// conflicts.
func (e *env) updateService(t *testing.T, ns, name string, mutate func(*corev1.Service)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		mutate(s)
		_, err = e.kube.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("update service %s/%s: %v", ns, name, err)
	}
}

// clearNamespace deletes every Service of ns and waits until they are gone.
func (e *env) clearNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx := t.Context()
	list, err := e.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if err := e.kube.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := e.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("Services of %s not deleted: %v", ns, err)
	}
}
