package lbclass

import (
	"context"
	"sync"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// View is the service controller's view of Services for one non-empty
// Class. It remembers which Services are in it (by UID), because one
// change takes a Service out of its class without a trace: when a
// Service's type changes away from LoadBalancer, the API server drops its
// loadBalancerClass. The controller must still see that Service to delete
// its load balancer and remove its finalizer. Safe for concurrent use.
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
// or it was in the view and has lost its class because its type is no
// longer LoadBalancer. A Service that returns to LoadBalancer without a
// class, or with another, is another implementation's again.
func inView(c Class, svc *v1.Service, was bool) bool {
	if svc.Spec.LoadBalancerClass != nil {
		return c.Of(svc)
	}
	return was && svc.Spec.Type != v1.ServiceTypeLoadBalancer
}

// present makes svc, freshly decoded from the API server and owned by the
// caller, what the controller must see: a Service without a class, which
// it serves. It changes nothing else, so the controller's patches (which
// reset the spec to the one it read and carry only metadata and status)
// never carry the class.
func present(svc *v1.Service) *v1.Service {
	svc.Spec.LoadBalancerClass = nil
	return svc
}

// list filters one page of a list of Services. It updates what the view
// remembers only for the Services listed: a list may come in pages, and
// one that is gone from the API server keeps a UID no Service will have
// again.
func (v *View) list(l *v1.ServiceList) *v1.ServiceList {
	v.mu.Lock()
	defer v.mu.Unlock()
	items := l.Items[:0]
	for i := range l.Items {
		svc := &l.Items[i]
		if !inView(v.class, svc, v.in[svc.UID]) {
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
	case inView(v.class, svc, was):
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
