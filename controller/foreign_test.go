package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/api/v1alpha1"
	berthfake "github.com/berthlb/berth/client/clientset/versioned/fake"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions"
	"github.com/berthlb/berth/ledger"
)

// TestForeignServices checks that addresses shown by LoadBalancer Services
// the controller does not handle (here unclassed ones, berth-ccm's) are
// never handed to a Service it handles, on start and as they change, and
// that the controller never writes to those Services.
func TestForeignServices(t *testing.T) {
	const a1, a2, a3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"
	// An unclassed Service (service) is not the controller's with
	// --handle-unclassed=false: berth-ccm's.
	ccm := service
	handled := func(name string, opts ...svcOpt) *corev1.Service {
		return service(name, append([]svcOpt{ours}, opts...)...)
	}
	add := func(s *corev1.Service) func(*harness) { return func(h *harness) { h.create(s) } }
	edit := func(name string, opts ...svcOpt) func(*harness) { return func(h *harness) { h.update(name, opts...) } }
	del := func(name string) func(*harness) { return func(h *harness) { h.remove(name, false) } }
	clusterIP := func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }
	sharing := withAnnotation(v1alpha1.AnnotationSharingKey, "web")

	tests := []struct {
		name     string
		existing []*corev1.Service // in the cache when the controller starts
		steps    []func(*harness)  // each followed by draining the queues
		// want is the ingress of the named Services at the end.
		want map[string][]string
		// wantEvents are the reasons of all Events, by Service.
		wantEvents map[string][]string
		// wantHolders, if set, is pool p's holder list.
		wantHolders []string
		// foreign Services must never be written to.
		foreign []string
	}{
		{
			name:        "restart: a foreign address is not handed out",
			existing:    []*corev1.Service{ccm("f", age(1), withIngress(a1)), handled("h", age(2))},
			want:        map[string][]string{"f": {a1}, "h": {a2}},
			wantEvents:  map[string][]string{"h": {eventAllocated}},
			wantHolders: []string{"ns/f", "ns/h"},
			foreign:     []string{"f"},
		},
		{
			name:     "an address written later is recorded before the next Service is even queued",
			existing: []*corev1.Service{ccm("f", age(1))},
			steps: []func(*harness){func(h *harness) {
				h.update("f", withIngress(a1))
				if got := h.c.ledger.Lookup(ledger.ForeignPrefix + "ns/f"); len(got) != 1 {
					h.t.Errorf("right after the event, foreign holding = %v, want %s", got, a1)
				}
				h.create(handled("h"))
			}},
			want:        map[string][]string{"f": {a1}, "h": {a2}},
			wantEvents:  map[string][]string{"h": {eventAllocated}},
			wantHolders: []string{"ns/f", "ns/h"},
			foreign:     []string{"f"},
		},
		{
			name:       "deleting the foreign Service frees its address",
			existing:   []*corev1.Service{ccm("f", age(1), withIngress(a1))},
			steps:      []func(*harness){del("f"), add(handled("h"))},
			want:       map[string][]string{"f": nil, "h": {a1}},
			wantEvents: map[string][]string{"h": {eventAllocated}},
			foreign:    []string{"f"},
		},
		{
			name:       "a delete seen only as a tombstone frees it too",
			existing:   []*corev1.Service{ccm("f", age(1), withIngress(a1))},
			steps:      []func(*harness){func(h *harness) { h.remove("f", true) }, add(handled("h"))},
			want:       map[string][]string{"h": {a1}},
			wantEvents: map[string][]string{"h": {eventAllocated}},
			foreign:    []string{"f"},
		},
		{
			name:        "clearing its ingress frees it",
			existing:    []*corev1.Service{ccm("f", age(1), withIngress(a1))},
			steps:       []func(*harness){edit("f", withIngress()), add(handled("h"))},
			want:        map[string][]string{"f": nil, "h": {a1}},
			wantEvents:  map[string][]string{"h": {eventAllocated}},
			wantHolders: []string{"ns/h"},
			foreign:     []string{"f"},
		},
		{
			name:       "a foreign Service that stops being a LoadBalancer frees it",
			existing:   []*corev1.Service{ccm("f", age(1), withIngress(a1))},
			steps:      []func(*harness){edit("f", clusterIP), add(handled("h"))},
			want:       map[string][]string{"h": {a1}},
			wantEvents: map[string][]string{"h": {eventAllocated}},
			foreign:    []string{"f"},
		},
		{
			name:        "an address outside every pool is none of Berth's business",
			existing:    []*corev1.Service{ccm("f", age(1), withIngress("203.0.113.7")), handled("h", age(2))},
			want:        map[string][]string{"f": {"203.0.113.7"}, "h": {a1}},
			wantEvents:  map[string][]string{"h": {eventAllocated}},
			wantHolders: []string{"ns/h"},
			foreign:     []string{"f"},
		},
		{
			name: "restart: an older foreign Service keeps a shared address; the newer one of Berth's moves, with an Event",
			existing: []*corev1.Service{
				handled("h", age(2), withIngress(a1), allocated),
				ccm("f", age(1), withIngress(a1)),
			},
			want:        map[string][]string{"f": {a1}, "h": {a2}},
			wantEvents:  map[string][]string{"h": {eventChanged}},
			wantHolders: []string{"ns/f", "ns/h"},
			foreign:     []string{"f"},
		},
		{
			// The controller yields to foreign Services, whatever their
			// age: berth-ccm cannot move its own (ledger.YieldToForeign).
			name: "restart: an older Service of Berth's moves too, with an Event; the foreign one keeps the address",
			existing: []*corev1.Service{
				handled("h", age(1), withIngress(a1), allocated),
				ccm("f", age(2), withIngress(a1)),
			},
			steps: []func(*harness){
				add(handled("h2", age(3))),
				del("h"),
				add(handled("h3", age(4))), // gets a2, which h let go
			},
			want:        map[string][]string{"f": {a1}, "h2": {a3}, "h3": {a2}},
			wantEvents:  map[string][]string{"h": {eventChanged}, "h2": {eventAllocated}, "h3": {eventAllocated}},
			wantHolders: []string{"ns/f", "ns/h2", "ns/h3"},
			foreign:     []string{"f"},
		},
		{
			name: "two foreign Services show one address: when the recorded one goes, the other holds it",
			existing: []*corev1.Service{
				ccm("f1", age(1), withIngress(a1)),
				ccm("f2", age(2), withIngress(a1)),
			},
			steps:       []func(*harness){del("f1"), add(handled("h", age(3)))},
			want:        map[string][]string{"f2": {a1}, "h": {a2}},
			wantEvents:  map[string][]string{"h": {eventAllocated}},
			wantHolders: []string{"ns/f2", "ns/h"},
			foreign:     []string{"f1", "f2"},
		},
		{
			name: "a foreign Service that becomes Berth's keeps its address",
			existing: []*corev1.Service{
				service("f", withClass("other.example/lb"), age(1), withIngress(a1)),
				handled("h", age(2)),
			},
			steps:       []func(*harness){edit("f", ours)},
			want:        map[string][]string{"f": {a1}, "h": {a2}},
			wantEvents:  map[string][]string{"h": {eventAllocated}},
			wantHolders: []string{"ns/f", "ns/h"},
		},
		{
			name:     "a Service that leaves Berth is released, and held again once its new implementation shows the address",
			existing: []*corev1.Service{handled("h", age(1), withIngress(a1), allocated)},
			steps: []func(*harness){
				edit("h", withClass("other.example/lb")),
				edit("h", withIngress(a1)), // the other implementation gives it a1 again
				add(handled("h2", age(2))),
			},
			want:        map[string][]string{"h": {a1}, "h2": {a2}},
			wantEvents:  map[string][]string{"h": {eventReleased}, "h2": {eventAllocated}},
			wantHolders: []string{"ns/h", "ns/h2"},
		},
		{
			name:     "a pool created later covers a foreign address at once",
			existing: []*corev1.Service{ccm("f", age(1), withIngress("198.51.100.1"))},
			steps: []func(*harness){
				func(h *harness) { h.addPool(testPool("q", "198.51.100.1-198.51.100.2")) },
				add(handled("h", age(2), withAnnotation(v1alpha1.AnnotationPool, "q"))),
			},
			want:       map[string][]string{"f": {"198.51.100.1"}, "h": {"198.51.100.2"}},
			wantEvents: map[string][]string{"h": {eventAllocated}},
			foreign:    []string{"f"},
		},
		{
			name:     "an address a foreign Service shows cannot be requested",
			existing: []*corev1.Service{ccm("f", age(1), withIngress(a1))},
			steps: []func(*harness){
				add(handled("h", age(2), withAnnotation(v1alpha1.AnnotationAddresses, a1))),
			},
			want:       map[string][]string{"f": {a1}, "h": nil},
			wantEvents: map[string][]string{"h": {eventAllocateFailed}},
			foreign:    []string{"f"},
		},
		{
			name:     "the sharing key and ports of a foreign Service count as for any holder",
			existing: []*corev1.Service{ccm("f", age(1), withIngress(a1), sharing, withPorts(80))},
			steps: []func(*harness){
				add(handled("h", age(2), sharing, withPorts(443))),
				add(handled("clash", age(3), sharing, withPorts(80))),
			},
			want:        map[string][]string{"f": {a1}, "h": {a1}, "clash": {a2}},
			wantEvents:  map[string][]string{"h": {eventAllocated}, "clash": {eventAllocated}},
			wantHolders: []string{"ns/clash", "ns/f", "ns/h"},
			foreign:     []string{"f"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testPool("p", "192.0.2.1-192.0.2.4"))
			for _, s := range tc.existing {
				h.create(s)
			}
			h.start()
			for _, step := range tc.steps {
				step(h)
				h.drain()
			}
			got := map[string][]string{}
			for name := range tc.want {
				got[name] = h.ingress(name)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ingress (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantEvents, h.rec.reasons, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("event reasons (-want +got):\n%s", diff)
			}
			for _, name := range tc.foreign {
				if n := h.w.writes[name]; n > 0 {
					t.Errorf("%d status writes on %s, a Service the controller does not handle", n, name)
				}
			}
			if tc.wantHolders != nil {
				st := h.w.poolStatus["p"]
				if st == nil {
					t.Fatalf("no status written for pool p")
				}
				if diff := cmp.Diff(tc.wantHolders, st.Holders); diff != "" || *st.HolderCount != int32(len(tc.wantHolders)) {
					t.Errorf("pool holders (count %d) (-want +got):\n%s", *st.HolderCount, diff)
				}
			}
		})
	}
}

// TestForeignConcurrent runs the controller with its workers on fake
// clientsets while another implementation's Services appear between its
// own: each of those shows the next even address before the next Service of
// Berth's is created, so Berth's must get exactly the odd ones. A second
// controller started on the same state then changes nothing.
func TestForeignConcurrent(t *testing.T) {
	const n = 12
	kube := kubefake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})
	berth := berthfake.NewSimpleClientset(testPool("p", "192.0.2.0-192.0.2.31"))
	run := func(ctx context.Context) *Controller {
		return runOnFakes(t, ctx, Config{LoadBalancerClass: testClass, Workers: 4}, kube, berth)
	}
	_, ctx := ktesting.NewTestContext(t)
	ctx1, stop := context.WithCancel(ctx)
	c := run(ctx1)
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return c.Ready(), nil
	}); err != nil {
		t.Fatal("controller not ready")
	}
	svcs := kube.CoreV1().Services("ns")
	for i := range n {
		f := service(fmt.Sprintf("f%02d", i), age(2*i), withIngress(fmt.Sprintf("192.0.2.%d", 2*i)))
		if _, err := svcs.Create(ctx, f, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := svcs.Create(ctx, service(fmt.Sprintf("h%02d", i), age(2*i+1), ours), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(i int) string { return fmt.Sprintf("192.0.2.%d", 2*i+1) }
	got := func() map[string]string {
		out := map[string]string{}
		for i := range n {
			name := fmt.Sprintf("h%02d", i)
			s, err := svcs.Get(ctx, name, metav1.GetOptions{})
			if err == nil && len(s.Status.LoadBalancer.Ingress) == 1 {
				out[name] = s.Status.LoadBalancer.Ingress[0].IP + "@" + s.ResourceVersion
			}
		}
		return out
	}
	var before map[string]string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		before = got()
		return len(before) == n, nil
	})
	if err != nil {
		t.Fatalf("allocated: %v", before)
	}
	for i := range n {
		name := fmt.Sprintf("h%02d", i)
		if ip, _, _ := strings.Cut(before[name], "@"); ip != want(i) {
			t.Errorf("%s got %s, want %s (the even addresses are the other implementation's)", name, ip, want(i))
		}
	}
	stop()

	ctx2, stop2 := context.WithCancel(ctx)
	defer stop2()
	c = run(ctx2)
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return c.Ready(), nil
	}); err != nil {
		t.Fatal("restarted controller not ready")
	}
	time.Sleep(200 * time.Millisecond) // let the workers do whatever they would
	if diff := cmp.Diff(before, got()); diff != "" {
		t.Errorf("the restarted controller changed Services (-before +after):\n%s", diff)
	}
}

// runOnFakes runs a Controller with its workers on fake clientsets until
// ctx is done, and returns it (not ready yet).
func runOnFakes(t *testing.T, ctx context.Context, cfg Config, kube *kubefake.Clientset, berth *berthfake.Clientset) *Controller {
	t.Helper()
	kubeInf := informers.NewSharedInformerFactory(kube, 0)
	berthInf := berthinformers.NewSharedInformerFactory(berth, 0)
	c, err := New(cfg, kube, berth, &fakeRecorder{}, NewMetrics(prometheus.NewRegistry()),
		kubeInf.Core().V1().Services(), kubeInf.Core().V1().Namespaces(), berthInf.Berth().V1alpha1().BerthIPPools())
	if err != nil {
		t.Fatal(err)
	}
	kubeInf.Start(ctx.Done())
	berthInf.Start(ctx.Done())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { <-done; kubeInf.Shutdown(); berthInf.Shutdown() })
	return c
}
