package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestControllerAllocation runs berth-controller against a real API server
// and checks, one scenario per subtest, what it writes on Services and pools.
// Each subtest uses its own namespace and address ranges.
func TestControllerAllocation(t *testing.T) {
	e := newEnv(t)
	ctrl := e.startController(t)
	ctrl.waitReady(t)

	t.Run("families", func(t *testing.T) {
		e.namespace(t, "fam", nil)
		e.pool(t, "fam", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.0/28", "2001:db8:1::/64"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"fam"}},
		})
		e.service(t, "fam", "v4", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol))
		e.service(t, "fam", "v6", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
		e.service(t, "fam", "dual", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol))
		for name, want := range map[string][]netip.Addr{
			"v4":   {mustAddr("198.51.100.0")},
			"v6":   {mustAddr("2001:db8:1::")},
			"dual": {mustAddr("2001:db8:1::1"), mustAddr("198.51.100.1")},
		} {
			got := e.waitAllocated(t, "fam", name, len(want))
			// Creation order decides who gets the lowest address, and the
			// three Services race; check families and range instead.
			for i, a := range got {
				if a.Is4() != want[i].Is4() {
					t.Errorf("%s: address %d is %s, want family of %s (ingress order follows ipFamilies)", name, i, a, want[i])
				}
			}
		}
		svc, _ := e.kube.CoreV1().Services("fam").Get(t.Context(), "dual", metav1.GetOptions{})
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeVIP {
				t.Errorf("ingress %s ipMode = %v, want VIP", ing.IP, ing.IPMode)
			}
		}
		if ev := e.events(t, "fam", "dual", "AddressAllocated"); len(ev) == 0 {
			t.Errorf("no AddressAllocated event for fam/dual")
		}
	})

	t.Run("requested addresses and tenant pools", func(t *testing.T) {
		e.namespace(t, "tenant-a", map[string]string{"team": "a"})
		e.namespace(t, "tenant-b", map[string]string{"team": "b"})
		e.pool(t, "pool-a", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.16/29"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}},
		})
		e.pool(t, "pool-b", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.24/29"},
			IPMode:            v1alpha1.IPModeProxy,
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"tenant-b"}},
		})
		e.service(t, "tenant-a", "mine", withAnnotation(v1alpha1.AnnotationAddresses, "198.51.100.20"))
		if got := e.waitAllocated(t, "tenant-a", "mine", 1); got[0] != mustAddr("198.51.100.20") {
			t.Errorf("tenant-a/mine got %v, want the requested 198.51.100.20", got)
		}
		// A tenant asking for another tenant's address gets nothing.
		e.service(t, "tenant-a", "theirs", withAnnotation(v1alpha1.AnnotationAddresses, "198.51.100.26"))
		// Until the controller has loaded pool-b (just created) the address
		// is "in no BerthIPPool"; then the message names the pool.
		e.waitService(t, "tenant-a", "theirs", "RequestedAddressUnavailable naming pool-b", func(s *corev1.Service) bool {
			c := condition(s)
			return c != nil && c.Reason == v1alpha1.ReasonRequestedAddressUnavailable &&
				strings.Contains(c.Message, `pool "pool-b"`) && len(s.Status.LoadBalancer.Ingress) == 0
		})
		// Naming the other tenant's pool does not help either.
		e.service(t, "tenant-a", "named", withAnnotation(v1alpha1.AnnotationPool, "pool-b"))
		e.waitPending(t, "tenant-a", "named", v1alpha1.ReasonNoMatchingPool)
		// The deprecated spec.loadBalancerIP is honoured, and the pool's
		// ipMode is written.
		e.service(t, "tenant-b", "legacy", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.30" })
		if got := e.waitAllocated(t, "tenant-b", "legacy", 1); got[0] != mustAddr("198.51.100.30") {
			t.Errorf("tenant-b/legacy got %v, want 198.51.100.30", got)
		}
		svc, _ := e.kube.CoreV1().Services("tenant-b").Get(t.Context(), "legacy", metav1.GetOptions{})
		if m := svc.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeProxy {
			t.Errorf("ipMode = %v, want Proxy from pool-b", m)
		}
		// An address outside every pool.
		e.service(t, "tenant-b", "nowhere", withAnnotation(v1alpha1.AnnotationAddresses, "192.0.2.99"))
		e.waitPending(t, "tenant-b", "nowhere", v1alpha1.ReasonRequestedAddressUnavailable)
		// An address already held by someone else, without sharing.
		e.service(t, "tenant-a", "taken", withAnnotation(v1alpha1.AnnotationAddresses, "198.51.100.20"))
		e.waitPending(t, "tenant-a", "taken", v1alpha1.ReasonRequestedAddressUnavailable)
	})

	t.Run("sharing", func(t *testing.T) {
		e.namespace(t, "share-1", nil)
		e.namespace(t, "share-2", nil)
		e.pool(t, "share", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.32/29"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"share-1", "share-2"}},
		})
		key := withAnnotation(v1alpha1.AnnotationSharingKey, "web")
		e.service(t, "share-1", "http", key, withPorts(80))
		e.service(t, "share-1", "https", key, withPorts(443))
		a := e.waitAllocated(t, "share-1", "http", 1)
		b := e.waitAllocated(t, "share-1", "https", 1)
		if a[0] != b[0] {
			t.Errorf("same key, different ports: got %v and %v, want one shared address", a, b)
		}
		// Same key and a colliding port: a different address.
		e.service(t, "share-1", "http-again", key, withPorts(80))
		if c := e.waitAllocated(t, "share-1", "http-again", 1); c[0] == a[0] {
			t.Errorf("port 80 twice on %v: sharing must not allow a port collision", c)
		}
		// Asking for the shared address with a colliding port is refused.
		e.service(t, "share-1", "collide", key, withPorts(443), withAnnotation(v1alpha1.AnnotationAddresses, a[0].String()))
		e.waitPending(t, "share-1", "collide", v1alpha1.ReasonSharingConflict)
		// Another namespace, same key: not shared, the pool does not allow it.
		e.service(t, "share-2", "other", key, withPorts(8080))
		if c := e.waitAllocated(t, "share-2", "other", 1); c[0] == a[0] {
			t.Errorf("cross-namespace sharing happened without allowCrossNamespaceSharing: %v", c)
		}
		// With the pool's consent it is.
		e.updatePool(t, "share", func(s *v1alpha1.BerthIPPoolSpec) { s.AllowCrossNamespaceSharing = true })
		e.service(t, "share-2", "joined", key, withPorts(8443), withAnnotation(v1alpha1.AnnotationAddresses, a[0].String()))
		if c := e.waitAllocated(t, "share-2", "joined", 1); c[0] != a[0] {
			t.Errorf("cross-namespace sharing allowed by the pool: got %v, want %v", c, a)
		}
	})

	t.Run("exhaustion and growth", func(t *testing.T) {
		e.namespace(t, "exh", nil)
		e.pool(t, "exh", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.40-198.51.100.41"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"exh"}},
		})
		e.service(t, "exh", "s1")
		e.waitAllocated(t, "exh", "s1", 1)
		e.service(t, "exh", "s2")
		e.waitAllocated(t, "exh", "s2", 1)
		e.service(t, "exh", "s3")
		e.waitPending(t, "exh", "s3", v1alpha1.ReasonPoolExhausted)
		e.updatePool(t, "exh", func(s *v1alpha1.BerthIPPoolSpec) {
			s.Addresses = []v1alpha1.AddressRange{"198.51.100.40-198.51.100.42"}
		})
		if got := e.waitAllocated(t, "exh", "s3", 1); got[0] != mustAddr("198.51.100.42") {
			t.Errorf("after growth s3 got %v, want 198.51.100.42", got)
		}
		e.waitPool(t, "exh", "used 3 of 3", func(p *v1alpha1.BerthIPPool) bool {
			return p.Status.IPv4 != nil && p.Status.IPv4.Used == "3" && p.Status.IPv4.Total == "3" && p.Status.IPv4.Free == "0"
		})
	})

	t.Run("pool edit removes an address in use", func(t *testing.T) {
		e.namespace(t, "edit", nil)
		e.pool(t, "edit", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.48/29"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"edit"}},
		})
		e.service(t, "edit", "moved", withAnnotation(v1alpha1.AnnotationAddresses, "198.51.100.50"))
		e.waitAllocated(t, "edit", "moved", 1)
		e.service(t, "edit", "stays")
		stays := e.waitAllocated(t, "edit", "stays", 1)
		// Drop the requested address from the pool: the Service cannot keep
		// it and waits, saying why; nothing else moves.
		e.updatePool(t, "edit", func(s *v1alpha1.BerthIPPoolSpec) { s.Reserved = []v1alpha1.AddressRange{"198.51.100.50"} })
		e.waitPending(t, "edit", "moved", v1alpha1.ReasonRequestedAddressUnavailable)
		if ev := e.events(t, "edit", "moved", "AddressReleased"); len(ev) == 0 || !strings.Contains(ev[0], "198.51.100.50") {
			t.Errorf("AddressReleased events = %q, want one naming 198.51.100.50", ev)
		}
		// An automatically chosen address that leaves the pool is replaced,
		// with an Event naming old and new.
		e.updatePool(t, "edit", func(s *v1alpha1.BerthIPPoolSpec) {
			s.Reserved = append(s.Reserved, v1alpha1.AddressRange(stays[0].String()))
		})
		got := e.waitService(t, "edit", "stays", "a new address", func(s *corev1.Service) bool {
			a := addrs(s)
			return len(a) == 1 && a[0] != stays[0]
		})
		ev := e.events(t, "edit", "stays", "AddressChanged")
		if len(ev) == 0 || !strings.Contains(ev[0], stays[0].String()) || !strings.Contains(ev[0], addrs(got)[0].String()) {
			t.Errorf("AddressChanged events = %q, want one naming %s and %s", ev, stays[0], addrs(got)[0])
		}
	})

	t.Run("pool deletion waits for its holders", func(t *testing.T) {
		e.namespace(t, "del", nil)
		e.pool(t, "del", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.56/29"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"del"}},
		})
		e.service(t, "del", "holder")
		held := e.waitAllocated(t, "del", "holder", 1)
		e.waitPool(t, "del", "finalizer", func(p *v1alpha1.BerthIPPool) bool { return slices.Contains(p.Finalizers, v1alpha1.PoolFinalizer) })
		if err := e.berth.BerthV1alpha1().BerthIPPools().Delete(t.Context(), "del", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Ready=False/Deleting comes from the controller's own view of
		// the pool, the one it allocates from: once it shows, the
		// controller knows the pool is terminating (InUse is True before
		// the deletion too, so it alone proves nothing).
		p := e.waitPool(t, "del", "Ready Deleting, InUse naming the holder", func(p *v1alpha1.BerthIPPool) bool {
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionInUse)
			r := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady)
			return p.DeletionTimestamp != nil && c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "del/holder") &&
				r != nil && r.Reason == "Deleting"
		})
		if !slices.Contains(p.Status.Holders, "del/holder") {
			t.Errorf("holders = %v, want del/holder", p.Status.Holders)
		}
		// A newcomer gets nothing from a terminating pool.
		e.service(t, "del", "newcomer")
		e.waitPending(t, "del", "newcomer", v1alpha1.ReasonNoMatchingPool)
		// The controller has judged a Service against the terminating
		// pool by now; the holder keeps its address, also over a window
		// in which a late re-judgement would show.
		holdsFor(t, 2*time.Second, "the holder keeps its address while its pool terminates", func() error {
			svc, err := e.kube.CoreV1().Services("del").Get(t.Context(), "holder", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !slices.Equal(addrs(svc), held) {
				return fmt.Errorf("holder's addresses changed to %v; want %v", addrs(svc), held)
			}
			return nil
		})
		if err := e.kube.CoreV1().Services("del").Delete(t.Context(), "holder", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := e.berth.BerthV1alpha1().BerthIPPools().Get(ctx, "del", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("pool not deleted after its last holder went: %v", err)
		}
	})

	t.Run("type change and class", func(t *testing.T) {
		e.namespace(t, "cls", nil)
		e.pool(t, "cls", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"198.51.100.64/29"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"cls"}},
		})
		e.service(t, "cls", "other-class", withClass("example.com/other"))
		e.service(t, "cls", "ours", withClass(v1alpha1.DefaultLoadBalancerClass))
		// "ours", created after "other-class", is served: the controller
		// has seen both. Nothing may touch the other class's Service,
		// then or later in the window.
		e.waitAllocated(t, "cls", "ours", 1)
		other, err := e.kube.CoreV1().Services("cls").Get(t.Context(), "other-class", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		holdsFor(t, 2*time.Second, "the Service of another class untouched", func() error {
			s, err := e.kube.CoreV1().Services("cls").Get(t.Context(), "other-class", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if s.ResourceVersion != other.ResourceVersion || len(s.Status.LoadBalancer.Ingress) > 0 || condition(s) != nil {
				return fmt.Errorf("written (resourceVersion %s -> %s): %s", other.ResourceVersion, s.ResourceVersion, statusString(s))
			}
			return nil
		})
		// Turning it into a ClusterIP Service releases the address and
		// removes what Berth wrote.
		s, _ := e.kube.CoreV1().Services("cls").Get(t.Context(), "ours", metav1.GetOptions{})
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.LoadBalancerClass = nil
		s.Spec.AllocateLoadBalancerNodePorts = nil
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
		if _, err := e.kube.CoreV1().Services("cls").Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitService(t, "cls", "ours", "status cleared", func(s *corev1.Service) bool {
			return len(s.Status.LoadBalancer.Ingress) == 0 && condition(s) == nil
		})
		e.waitPool(t, "cls", "no holders", func(p *v1alpha1.BerthIPPool) bool {
			return p.Status.HolderCount == 0 && p.Status.IPv4 != nil && p.Status.IPv4.Used == "0"
		})
	})

	t.Run("advertisements are checked against pools and peers", func(t *testing.T) {
		e.pool(t, "adv24", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"192.0.2.0/24"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"nobody"}},
		})
		agg := int32(16)
		for name, spec := range map[string]v1alpha1.BerthBGPAdvertisementSpec{
			"adv-ok":      {AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"adv24"}}},
			"adv-agg":     {AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"adv24"}}, AggregationLength: &agg},
			"adv-missing": {AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"nope"}}, Peers: []string{"ghost"}},
		} {
			if _, err := e.berth.BerthV1alpha1().BerthBGPAdvertisements().Create(t.Context(), &v1alpha1.BerthBGPAdvertisement{
				ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for name, want := range map[string]string{
			"adv-ok":      "",
			"adv-agg":     `aggregation length 16 makes 192.0.0.0/16, which is larger than pool "adv24"'s addresses`,
			"adv-missing": `pool "nope" does not exist; BerthBGPPeer "ghost" does not exist`,
		} {
			var last *metav1.Condition
			err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				a, err := e.berth.BerthV1alpha1().BerthBGPAdvertisements().Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false, nil
				}
				last = meta.FindStatusCondition(a.Status.Conditions, "Valid")
				if last == nil {
					return false, nil
				}
				if want == "" {
					return last.Status == metav1.ConditionTrue, nil
				}
				return last.Status == metav1.ConditionFalse && last.Message == want, nil
			})
			if err != nil {
				t.Errorf("%s: Valid condition %+v, want message %q", name, last, want)
			}
		}
	})

	t.Run("pool status", func(t *testing.T) {
		e.pool(t, "big6", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"2001:db8:48::/48"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"nobody"}},
		})
		e.pool(t, "overlap", v1alpha1.BerthIPPoolSpec{
			Addresses:         []v1alpha1.AddressRange{"2001:db8:48::/120"},
			ServiceAllocation: &v1alpha1.ServiceAllocation{Namespaces: []string{"nobody"}},
		})
		p := e.waitPool(t, "big6", "exact counts and Overlapping", func(p *v1alpha1.BerthIPPool) bool {
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionOverlapping)
			return p.Status.IPv6 != nil && c != nil && c.Status == metav1.ConditionTrue
		})
		want := &v1alpha1.AddressCounts{Total: "1208925819614629174706176", Used: "0", Free: "1208925819614629174706176"}
		if diff := cmp.Diff(want, p.Status.IPv6); diff != "" {
			t.Errorf("IPv6 counts of a /48 (-want +got):\n%s", diff)
		}
		if p.Status.IPv4 != nil {
			t.Errorf("IPv4 counts on an IPv6-only pool: %+v", p.Status.IPv4)
		}
		ready := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || p.Status.ObservedGeneration != p.Generation {
			t.Errorf("Ready = %+v, observedGeneration %d of %d", ready, p.Status.ObservedGeneration, p.Generation)
		}
	})
}

// waitPool polls a pool until ok accepts it.
func (e *env) waitPool(t *testing.T, name, what string, ok func(*v1alpha1.BerthIPPool) bool) *v1alpha1.BerthIPPool {
	t.Helper()
	var last *v1alpha1.BerthIPPool
	err := wait.PollUntilContextTimeout(t.Context(), 25*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.berth.BerthV1alpha1().BerthIPPools().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return ok(p), nil
	})
	if err != nil {
		t.Fatalf("pool %s: waiting for %s: %v; last: %+v", name, what, err, last)
	}
	return last
}
