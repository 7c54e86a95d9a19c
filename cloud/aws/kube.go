package aws

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/cloud/lbclass"
)

// fieldManager names berth-ccm's Node annotation patches.
const fieldManager = "berth-ccm"

// nodeLister is a NodeSource backed by an informer's lister.
type nodeLister struct{ l corelisters.NodeLister }

func (n nodeLister) Nodes() ([]*v1.Node, error) { return n.l.List(labels.Everything()) }

// sliceLister is an EndpointSource backed by an EndpointSlice lister.
type sliceLister struct {
	l discoverylisters.EndpointSliceLister
}

func (s sliceLister) NodesWithEndpoints(namespace, name string) (map[string]bool, error) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
	slices, err := s.l.EndpointSlices(namespace).List(sel)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, es := range slices {
		for _, ep := range es.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				out[*ep.NodeName] = true
			}
		}
	}
	return out, nil
}

// nodePatcher is an Annotator that merge-patches one key at a time, so
// concurrent writers of other keys are never overwritten.
type nodePatcher struct{ kube kubernetes.Interface }

func (p nodePatcher) Annotate(ctx context.Context, node, key string, value *string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{key: value}}})
	if err != nil {
		return err
	}
	_, err = p.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	if value == nil && apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Start watches Nodes, Services and EndpointSlices so that eip mode sees
// every node's eligibility (the service controller does not call Update
// when a node is cordoned or turns NotReady) and, for
// externalTrafficPolicy Local, where the ready endpoints are, and moves an
// Elastic IP off a node that lost it, for the Services of class (the one
// berth-ccm serves). It returns at once; the work ends with ctx.
func (b *Backend) Start(ctx context.Context, kube kubernetes.Interface, class lbclass.Class) error {
	f := informers.NewSharedInformerFactory(kube, 0)
	nodes, services := f.Core().V1().Nodes(), f.Core().V1().Services()
	slices := f.Discovery().V1().EndpointSlices()
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "berth-ccm-eip"})
	enqueue := func(obj any) {
		if n, ok := obj.(*v1.Node); ok && !eipNode(n) {
			b.queueMapped(n, q)
		}
	}
	_, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) { b.nodeDeleted(obj, q) },
	})
	if err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	svcLister, nodeSource, endpoints := services.Lister(), nodeLister{nodes.Lister()}, sliceLister{slices.Lister()}
	onSlice := func(obj any) { b.endpointsChanged(obj, svcLister, nodeSource, endpoints, q) }
	_, err = slices.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onSlice, UpdateFunc: func(_, obj any) { onSlice(obj) }, DeleteFunc: onSlice,
	})
	if err != nil {
		return fmt.Errorf("watch endpoint slices: %w", err)
	}
	b.SetKubernetes(nodeSource, nodePatcher{kube}, endpoints)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	b.SetReporter(kubeReporter{kube: kube, events: broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: fieldManager})})
	b.synced = []func() bool{nodes.Informer().HasSynced, services.Informer().HasSynced, slices.Informer().HasSynced}
	f.Start(ctx.Done())
	go func() {
		defer q.ShutDown()
		defer broadcaster.Shutdown()
		<-ctx.Done()
	}()
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced, services.Informer().HasSynced, slices.Informer().HasSynced) {
			return
		}
		for b.moveOne(ctx, q, svcLister, class) {
		}
	}()
	return nil
}

// HasSynced reports whether the Node, Service and EndpointSlice caches
// that Start began have loaded; false before Start. Call it only after
// Start returned.
func (b *Backend) HasSynced() bool {
	for _, synced := range b.synced {
		if !synced() {
			return false
		}
	}
	return len(b.synced) > 0
}

// nodeDeleted queues the Services whose Elastic IP was mapped to a node
// that is gone.
func (b *Backend) nodeDeleted(obj any, q workqueue.TypedRateLimitingInterface[string]) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if n, ok := obj.(*v1.Node); ok {
		b.queueMapped(n, q)
	}
}

// queueMapped queues the Services whose Elastic IP is mapped to the node.
func (b *Backend) queueMapped(n *v1.Node, q workqueue.TypedRateLimitingInterface[string]) {
	for k, v := range n.Annotations {
		if strings.HasPrefix(k, v1alpha1.NodeAnnotationForwardPrefix) {
			q.Add(v)
		}
	}
}

// endpointsChanged queues an eip-mode Service with externalTrafficPolicy
// Local whose Elastic IP is mapped to a node that no longer runs a ready
// endpoint, as the Node annotations in the cache tell; no AWS call is made
// for the others.
func (b *Backend) endpointsChanged(obj any, services corelisters.ServiceLister, nodes NodeSource, eps EndpointSource, q workqueue.TypedRateLimitingInterface[string]) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	name := es.Labels[discoveryv1.LabelServiceName]
	svc, err := services.Services(es.Namespace).Get(name)
	if err != nil || svc.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
		return
	}
	if mode, err := b.mode(svc); err != nil || mode != ModeEIP {
		return
	}
	local, err := eps.NodesWithEndpoints(es.Namespace, name)
	all, nerr := nodes.Nodes()
	if err != nil || nerr != nil {
		return
	}
	key := es.Namespace + "/" + name
	for _, n := range all {
		for k, v := range n.Annotations {
			if strings.HasPrefix(k, v1alpha1.NodeAnnotationForwardPrefix) && v == key && !local[n.Name] {
				q.Add(key)
				return
			}
		}
	}
}

// moveOne re-places one queued Service's Elastic IP; false when the queue
// is shut down.
func (b *Backend) moveOne(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], services corelisters.ServiceLister, class lbclass.Class) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	ns, name, _ := strings.Cut(key, "/")
	svc, err := services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		q.Forget(key)
		return true
	}
	mode, merr := b.mode(svc)
	if err == nil && (merr != nil || mode != ModeEIP || !class.Serves(svc) || svc.DeletionTimestamp != nil) {
		q.Forget(key)
		return true
	}
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err = b.ensureEIP(cctx, svc, nil)
		cancel()
	}
	if err != nil {
		b.log.Error(err, "Move Elastic IP off an ineligible node; will retry", "service", key)
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}
