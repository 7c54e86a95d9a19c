package lbclass

import (
	"context"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	servicehelper "k8s.io/cloud-provider/service/helpers"
)

// Finalizer is the finalizer berth-ccm puts on the Services of its class
// instead of upstream's service.kubernetes.io/load-balancer-cleanup: the
// upstream service controller (and so a managed one) cleans up every
// Service that carries upstream's finalizer and is being deleted, or is
// no longer a LoadBalancer, whatever its class. The view presents it to
// the controller as upstream's, and FinalizerTransport turns upstream's
// back into it in what the controller sends.
const Finalizer = "berth.dev/load-balancer-cleanup"

// View is the service controller's view of Services for one non-empty
// Class. It remembers which Services are in it (by UID) so that one
// leaving it is delivered as deleted. Safe for concurrent use.
type View struct {
	class Class
	mu    sync.Mutex
	in    map[types.UID]bool
}

// NewView returns the view for class c, which must not be empty (the
// empty class needs no view: the controller serves the unclassed Services
// by itself).
func NewView(c Class) *View { return &View{class: c, in: map[types.UID]bool{}} }

// inView reports whether the service controller sees svc: its class is c,
// or it has no class, is no longer a LoadBalancer and still carries
// Berth's finalizer. The API server drops a Service's class when its type
// changes away from LoadBalancer; the controller must still see it to
// delete its load balancer and remove the finalizer.
func inView(c Class, svc *v1.Service) bool {
	if svc.Spec.LoadBalancerClass != nil {
		return c.Of(svc)
	}
	return svc.Spec.Type != v1.ServiceTypeLoadBalancer && slices.Contains(svc.Finalizers, Finalizer)
}

// present makes svc, freshly decoded from the API server and owned by the
// caller, what the controller must see: a Service without a class, which
// it serves, with Berth's finalizer shown as upstream's. It changes
// nothing else, so the controller's patches (which reset the spec to the
// one it read and carry only metadata and status) never carry the class.
func present(svc *v1.Service) *v1.Service {
	svc.Spec.LoadBalancerClass = nil
	for i, f := range svc.Finalizers {
		if f == Finalizer {
			svc.Finalizers[i] = servicehelper.LoadBalancerCleanupFinalizer
		}
	}
	return svc
}

// list filters one page of a list of Services.
func (v *View) list(l *v1.ServiceList) *v1.ServiceList {
	v.mu.Lock()
	defer v.mu.Unlock()
	items := l.Items[:0]
	for i := range l.Items {
		svc := &l.Items[i]
		if !inView(v.class, svc) {
			delete(v.in, svc.UID)
			continue
		}
		v.in[svc.UID] = true
		items = append(items, *present(svc))
	}
	l.Items = items
	return l
}

// event maps one watch event from the API server to the one the view
// delivers; ok is false when it delivers none. A Service leaving the view
// is delivered as deleted, so the informer's cache forgets it; one
// entering it arrives as modified, which the informer treats as added.
func (v *View) event(e watch.Event) (watch.Event, bool) {
	svc, ok := e.Object.(*v1.Service)
	if !ok || e.Type == watch.Bookmark || e.Type == watch.Error {
		return e, true
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	was := v.in[svc.UID]
	switch {
	case e.Type == watch.Deleted:
		delete(v.in, svc.UID)
		if !was {
			return e, false
		}
	case inView(v.class, svc):
		v.in[svc.UID] = true
	case was:
		delete(v.in, svc.UID)
		return watch.Event{Type: watch.Deleted, Object: present(svc)}, true
	default:
		return e, false
	}
	return watch.Event{Type: e.Type, Object: present(svc)}, true
}

// ListWatch is the view over the API server's Services in all namespaces.
func (v *View) ListWatch(kube kubernetes.Interface) cache.ListerWatcher {
	svcs := kube.CoreV1().Services(metav1.NamespaceAll)
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l, err := svcs.List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return v.list(l), nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w, err := svcs.Watch(ctx, opts)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, v.event), nil
		},
	}
}
