package ledger

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/api/v1alpha1"
)

func lbService(name, class string, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}}}
	if class != "" {
		s.Spec.LoadBalancerClass = &class
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

// TestForeignBeforeRestore: a foreign Service that appears (or gets its
// address) between the list a replay works from and the end of the replay
// is held all the same; berth-ccm used to drop such events.
func TestForeignBeforeRestore(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	l := New(Options{
		Serves:   func(s *corev1.Service) bool { return s.Spec.LoadBalancerClass == nil },
		Services: corelisters.NewServiceLister(idx),
	})
	l.SetPools([]*v1alpha1.BerthIPPool{{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.1-192.0.2.2"}}}})
	late := lbService("late", "other", "192.0.2.1")
	if err := idx.Add(late); err != nil {
		t.Fatal(err)
	}
	l.SyncForeign("ns/late") // the event, before the replay has run
	if got := l.Lookup(ForeignPrefix + "ns/late"); len(got) != 0 {
		t.Fatalf("held before the replay: %v", got)
	}
	l.Restore(nil) // the replay's list did not have it yet
	if got := l.Lookup(ForeignPrefix + "ns/late"); len(got) != 1 {
		t.Fatalf("after the replay, foreign holding = %v; want 192.0.2.1", got)
	}
	svc := lbService("mine", "")
	if err := idx.Add(svc); err != nil {
		t.Fatal(err)
	}
	out, err := l.Assign(svc)
	if err != nil || out.Err != nil || len(out.Got) != 1 || out.Got[0].Addr.String() != "192.0.2.2" {
		t.Errorf("new Service got %+v, %v; want 192.0.2.2", out, err)
	}
}

// TestServeWaitingStopsWhenTaken: a freed address is offered to waiting
// Services oldest first only until someone takes it.
func TestServeWaitingStopsWhenTaken(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	judged := map[string]int{}
	l := New(Options{
		Serves: func(s *corev1.Service) bool {
			judged[s.Name]++
			return true
		},
		Services: corelisters.NewServiceLister(idx),
	})
	l.SetPools([]*v1alpha1.BerthIPPool{{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.1"}}}})
	l.Restore(nil)
	var svcs []*corev1.Service
	for i, n := range []string{"holder", "w1", "w2", "w3"} {
		s := lbService(n, "")
		s.CreationTimestamp = metav1.Unix(int64(i), 0)
		svcs = append(svcs, s)
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Assign(s); err != nil {
			t.Fatal(err)
		}
	}
	clear(judged)
	_, wake := l.Release("ns/holder")
	if len(wake) != 1 || wake[0] != "ns/w1" {
		t.Errorf("woken %v; want [ns/w1]", wake)
	}
	if judged["w2"]+judged["w3"] > 0 {
		t.Errorf("judged %v after the address was taken; want only w1", judged)
	}
}
