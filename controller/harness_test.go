package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/api/v1alpha1"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	berthfake "github.com/berthlb/berth/client/clientset/versioned/fake"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions"
)

// testClass is the loadBalancerClass the controller under test handles;
// unclassed Services are not its own (--handle-unclassed=false).
const testClass = "berth.dev/lb"

// harness runs a Controller without goroutines: objects go into the
// informers' stores by hand and the handlers are called as the informer
// would; drain works the queues until they are empty, delivering the
// controller's own writes back as update events in between, like a cache
// that lags a little.
type harness struct {
	t       *testing.T
	ctx     context.Context
	c       *Controller
	svcs    cache.Indexer
	pools   cache.Indexer
	nss     cache.Indexer
	w       *fakeWriter
	rec     *fakeRecorder
	rv      int
	pending []func()
}

func newHarness(t *testing.T, pools ...*v1alpha1.BerthIPPool) *harness {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	kubeInf := informers.NewSharedInformerFactory(kubefake.NewClientset(), 0)
	berthInf := berthinformers.NewSharedInformerFactory(berthfake.NewSimpleClientset(), 0)
	svcInf, nsInf, poolInf := kubeInf.Core().V1().Services(), kubeInf.Core().V1().Namespaces(), berthInf.Berth().V1alpha1().BerthIPPools()
	h := &harness{t: t, ctx: ctx, svcs: svcInf.Informer().GetIndexer(), pools: poolInf.Informer().GetIndexer(), rec: &fakeRecorder{}}
	h.w = &fakeWriter{h: h, writes: map[string]int{}, poolStatus: map[string]*berthac.BerthIPPoolStatusApplyConfiguration{}}
	c, err := newController(Config{LoadBalancerClass: testClass}, h.w, h.rec, NewMetrics(prometheus.NewRegistry()), svcInf, nsInf, poolInf)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	// Every Service of these tests lives in "ns" (or "other"); their
	// Namespaces exist, as they must before a Service can be created.
	h.nss = nsInf.Informer().GetIndexer()
	for _, ns := range []string{"ns", "other"} {
		if err := h.nss.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pools {
		if err := h.pools.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// start does what Run does once the caches have synced.
func (h *harness) start() {
	h.c.rebuildState(h.ctx)
	h.drain()
}

func (h *harness) drain() {
	h.t.Helper()
	for range 10000 {
		switch {
		case len(h.pending) > 0:
			f := h.pending[0]
			h.pending = h.pending[1:]
			f()
		case h.c.svcQueue.Len() > 0:
			h.c.processNext(h.ctx, h.c.svcQueue, h.c.syncService, "service")
		case h.c.poolQueue.Len() > 0:
			h.c.processNext(h.ctx, h.c.poolQueue, h.c.syncPoolKey, "pool")
		default:
			return
		}
	}
	h.t.Fatal("the queues do not settle")
}

func (h *harness) get(name string) *corev1.Service {
	obj, ok, _ := h.svcs.GetByKey("ns/" + name)
	if !ok {
		return nil
	}
	return obj.(*corev1.Service)
}

// create adds a Service as the informer would.
func (h *harness) create(svc *corev1.Service) {
	h.t.Helper()
	svc = svc.DeepCopy()
	h.rv++
	svc.ResourceVersion = strconv.Itoa(h.rv)
	if err := h.svcs.Add(svc); err != nil {
		h.t.Fatal(err)
	}
	h.c.serviceChanged(nil, svc)
}

// update changes a Service as the informer would; nothing if it is gone.
func (h *harness) update(name string, mutate ...svcOpt) { h.updateIn("ns", name, mutate...) }

// updateIn is update for a Service of any namespace.
func (h *harness) updateIn(ns, name string, mutate ...svcOpt) {
	h.t.Helper()
	obj, ok, _ := h.svcs.GetByKey(ns + "/" + name)
	if !ok {
		return
	}
	old := obj.(*corev1.Service)
	svc := old.DeepCopy()
	for _, m := range mutate {
		m(svc)
	}
	h.rv++
	svc.ResourceVersion = strconv.Itoa(h.rv)
	if err := h.svcs.Update(svc); err != nil {
		h.t.Fatal(err)
	}
	h.c.serviceChanged(old, svc)
}

// remove deletes a Service; with tombstone the handler is told only the
// informer's last state, as after a missed watch event.
func (h *harness) remove(name string, tombstone bool) {
	h.t.Helper()
	old := h.get(name)
	if err := h.svcs.Delete(old); err != nil {
		h.t.Fatal(err)
	}
	var obj any = old
	if tombstone {
		obj = cache.DeletedFinalStateUnknown{Key: "ns/" + name, Obj: old}
	}
	h.c.serviceChanged(obj, nil)
}

// addPool creates a pool as the informer would.
func (h *harness) addPool(p *v1alpha1.BerthIPPool) {
	h.t.Helper()
	if err := h.pools.Add(p); err != nil {
		h.t.Fatal(err)
	}
	h.c.poolChanged(nil, p)
}

// ingress returns the Service's ingress IPs as the cache has them.
func (h *harness) ingress(name string) []string {
	svc := h.get(name)
	if svc == nil {
		return nil
	}
	var out []string
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		out = append(out, ing.IP)
	}
	return out
}

// fakeWriter applies the controller's writes to the harness's cache, one
// drain step later.
type fakeWriter struct {
	h          *harness
	writes     map[string]int // status writes (and clears) by Service name
	log        []string       // every status write in order, "name:ip,ip"
	poolStatus map[string]*berthac.BerthIPPoolStatusApplyConfiguration
	peerStatus map[string]*berthac.BerthBGPPeerStatusApplyConfiguration // by peer name
}

func (w *fakeWriter) applyServiceStatus(_ context.Context, ac *corev1ac.ServiceApplyConfiguration) error {
	var ingress []corev1.LoadBalancerIngress
	for _, ing := range ac.Status.LoadBalancer.Ingress {
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: *ing.IP, IPMode: ing.IPMode})
	}
	var conds []metav1.Condition
	for _, c := range ac.Status.Conditions {
		conds = append(conds, metav1.Condition{Type: *c.Type, Status: *c.Status, Reason: *c.Reason, Message: *c.Message,
			ObservedGeneration: *c.ObservedGeneration, LastTransitionTime: *c.LastTransitionTime})
	}
	return w.setStatus(*ac.Namespace, *ac.Name, corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: ingress}, Conditions: conds})
}

func (w *fakeWriter) clearServiceStatus(_ context.Context, ns, name string) error {
	return w.setStatus(ns, name, corev1.ServiceStatus{})
}

func (w *fakeWriter) setStatus(ns, name string, st corev1.ServiceStatus) error {
	w.writes[name]++
	ips := make([]string, len(st.LoadBalancer.Ingress))
	for i, ing := range st.LoadBalancer.Ingress {
		ips[i] = ing.IP
	}
	w.log = append(w.log, name+":"+strings.Join(ips, ","))
	w.h.pending = append(w.h.pending, func() {
		w.h.updateIn(ns, name, func(s *corev1.Service) { s.Status = st })
	})
	return nil
}

func (w *fakeWriter) applyPoolStatus(_ context.Context, ac *berthac.BerthIPPoolApplyConfiguration) error {
	w.poolStatus[*ac.Name] = ac.Status
	return nil
}

func (w *fakeWriter) setPoolFinalizer(_ context.Context, pool *v1alpha1.BerthIPPool, present bool) error {
	p := pool.DeepCopy()
	p.Finalizers = nil
	if present {
		p.Finalizers = []string{v1alpha1.PoolFinalizer}
	}
	w.h.pending = append(w.h.pending, func() {
		if err := w.h.pools.Update(p); err != nil {
			w.h.t.Fatal(err)
		}
		w.h.c.poolChanged(pool, p)
	})
	return nil
}

func (w *fakeWriter) applyBGPAdvertisementStatus(context.Context, *berthac.BerthBGPAdvertisementApplyConfiguration) error {
	return nil
}

func (w *fakeWriter) applyL2AdvertisementStatus(context.Context, *berthac.BerthL2AdvertisementApplyConfiguration) error {
	return nil
}

func (w *fakeWriter) applyBGPPeerStatus(_ context.Context, ac *berthac.BerthBGPPeerApplyConfiguration) error {
	if w.peerStatus == nil {
		w.peerStatus = map[string]*berthac.BerthBGPPeerStatusApplyConfiguration{}
	}
	w.peerStatus[*ac.Name] = ac.Status
	return nil
}

// fakeRecorder keeps the reasons of the Events about each Service, by name.
type fakeRecorder struct {
	mu       sync.Mutex
	reasons  map[string][]string
	messages map[string][]string
}

func (r *fakeRecorder) Event(obj runtime.Object, _, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reasons == nil {
		r.reasons = map[string][]string{}
	}
	name := fmt.Sprint(obj)
	if svc, ok := obj.(*corev1.Service); ok {
		name = svc.Name
	}
	if p, ok := obj.(*v1alpha1.BerthIPPool); ok {
		name = "pool/" + p.Name
	}
	r.reasons[name] = append(r.reasons[name], reason)
	if r.messages == nil {
		r.messages = map[string][]string{}
	}
	r.messages[name] = append(r.messages[name], msg)
}

func (r *fakeRecorder) Eventf(obj runtime.Object, typ, reason, format string, args ...any) {
	r.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

func (r *fakeRecorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	r.Eventf(obj, typ, reason, format, args...)
}

// Service fixtures, all in namespace "ns".

type svcOpt func(*corev1.Service)

func service(name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			CreationTimestamp: metav1.NewTime(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ours makes the Service the controller's (class testClass).
func ours(s *corev1.Service) { withClass(testClass)(s) }

func withClass(class string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }
}

// age sets the creation time to n minutes after a fixed start: lower is
// older.
func age(n int) svcOpt {
	return func(s *corev1.Service) {
		s.CreationTimestamp = metav1.NewTime(time.Date(2025, 1, 1, 0, n, 0, 0, time.UTC))
	}
}

func withIngress(ips ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Status.LoadBalancer.Ingress = nil
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

// allocated puts the controller's condition on the Service, as if it had
// served it before.
func allocated(s *corev1.Service) {
	s.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ServiceConditionAddressAllocated, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonAllocated, Message: "from before the restart"}}
}

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprint(p), Port: p, Protocol: corev1.ProtocolTCP})
		}
	}
}

func testPool(name string, addrs ...v1alpha1.AddressRange) *v1alpha1.BerthIPPool {
	return &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec: v1alpha1.BerthIPPoolSpec{Addresses: addrs}}
}

// step changes the cluster (or restarts the controller) and returns the
// harness to go on with.
type step func(*harness) *harness

// outcome is a Service's ingress and its condition's reason ("" for none).
type outcome struct {
	ingress []string
	reason  string
}

// expect checks a Service in namespace "ns" against want.
func (h *harness) expect(name string, want outcome) {
	h.t.Helper()
	got := outcome{ingress: h.ingress(name)}
	if svc := h.get(name); svc != nil {
		if c := findCondition(svc); c != nil {
			got.reason = c.Reason
			if (c.Reason == v1alpha1.ReasonAllocated) != (c.Status == metav1.ConditionTrue) {
				h.t.Errorf("%s: condition %s with status %s", name, c.Reason, c.Status)
			}
		}
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(outcome{}), cmpopts.EquateEmpty()); diff != "" {
		h.t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// runSteps starts a controller on pool, runs steps (draining the queues
// after each), and checks the Services' outcomes and, unless wantEvents is
// nil, the reasons of the Events recorded on the Services it names.
func runSteps(t *testing.T, pool *v1alpha1.BerthIPPool, steps []step, want map[string]outcome, wantEvents map[string][]string) {
	t.Helper()
	h := newHarness(t, pool)
	h.start()
	for _, s := range steps {
		h = s(h)
		h.drain()
	}
	for name, w := range want {
		h.expect(name, w)
	}
	if wantEvents == nil {
		return
	}
	got := map[string][]string{}
	for name := range wantEvents {
		got[name] = h.rec.reasons[name]
	}
	if diff := cmp.Diff(wantEvents, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("event reasons (-want +got):\n%s", diff)
	}
}

// restart starts a new controller on the Services and pools the old one
// left in the cache, as after a crash.
func (h *harness) restart() *harness { return h.restartWith(nil) }

// restartWith is restart with pool "p" changed while no controller ran.
func (h *harness) restartWith(mutate func(*v1alpha1.BerthIPPool)) *harness {
	h.t.Helper()
	var pools []*v1alpha1.BerthIPPool
	for _, obj := range h.pools.List() {
		p := obj.(*v1alpha1.BerthIPPool).DeepCopy()
		if mutate != nil && p.Name == "p" {
			mutate(p)
			p.Generation++
		}
		pools = append(pools, p)
	}
	n := newHarness(h.t, pools...)
	n.rv = h.rv
	for _, obj := range h.svcs.List() {
		if err := n.svcs.Add(obj.(*corev1.Service).DeepCopy()); err != nil {
			h.t.Fatal(err)
		}
	}
	n.start()
	return n
}

// editPool changes pool name as the informer would.
func (h *harness) editPool(name string, mutate func(*v1alpha1.BerthIPPool)) {
	h.t.Helper()
	obj, ok, _ := h.pools.GetByKey(name)
	if !ok {
		h.t.Fatalf("no pool %s", name)
	}
	old := obj.(*v1alpha1.BerthIPPool)
	p := old.DeepCopy()
	mutate(p)
	p.Generation++
	if err := h.pools.Update(p); err != nil {
		h.t.Fatal(err)
	}
	h.c.poolChanged(old, p)
}

// addNamespace creates a Namespace as the informer would.
func (h *harness) addNamespace(name string, labels map[string]string) {
	h.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := h.nss.Add(ns); err != nil {
		h.t.Fatal(err)
	}
	h.c.namespaceChanged(nil, ns)
}

// ingressIn is ingress for a Service of any namespace.
func (h *harness) ingressIn(ns, name string) []string {
	obj, ok, _ := h.svcs.GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	var out []string
	for _, ing := range obj.(*corev1.Service).Status.LoadBalancer.Ingress {
		out = append(out, ing.IP)
	}
	return out
}
