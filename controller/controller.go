package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions/api/v1alpha1"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// Config says which Services the controller handles and how hard it works.
type Config struct {
	// LoadBalancerClass is the spec.loadBalancerClass Berth handles.
	LoadBalancerClass string
	// HandleUnclassed makes Berth handle LoadBalancer Services without a
	// class too.
	HandleUnclassed bool
	// Workers is the number of Services reconciled at once.
	Workers int
	// PoolStatusDelay batches pool status writes: a pool's status is
	// written at most once per delay however many Services change.
	PoolStatusDelay time.Duration
}

// Controller allocates addresses to Services. Create it with New and start
// it with Run; it is not reusable after Run returns.
type Controller struct {
	cfg      Config
	writer   writer
	recorder record.EventRecorder
	metrics  *Metrics
	alloc    *allocator.Allocator

	services   corelisters.ServiceLister
	namespaces corelisters.NamespaceLister
	pools      berthlisters.IPPoolLister
	synced     []cache.InformerSynced

	svcQueue  workqueue.TypedRateLimitingInterface[string]
	poolQueue workqueue.TypedRateLimitingInterface[string]

	// pools is the current validated view of the IPPools; rebuilt on every
	// change of a pool's spec, read by every reconcile.
	poolConfig atomic.Pointer[config.Config]
	rebuildMu  sync.Mutex
	builtFrom  string // poolsFingerprint of the last rebuild; guarded by rebuildMu
	ready      atomic.Bool
	// written holds a lastWrite per Service key.
	written sync.Map
	// advs is set by WatchAdvertisements.
	advs *advertisements
	// foreignMu serialises the updates of foreign holdings (see
	// syncForeign) and guards foreign.
	foreignMu sync.Mutex
	foreign   foreignState
	// log is the logger of Run, for the Service event handler; written
	// before ready is set and read only after.
	log logr.Logger
}

// rebuildKey in the pool queue asks for the pool configuration to be rebuilt.
const rebuildKey = ""

// New wires a Controller to its informers and to the API server it writes
// to. The informers must be started by the caller after New, so that the
// handlers are registered.
func New(cfg Config, kube kubernetes.Interface, berth versioned.Interface, rec record.EventRecorder, m *Metrics,
	svcInf coreinformers.ServiceInformer, nsInf coreinformers.NamespaceInformer, poolInf berthinformers.IPPoolInformer,
) (*Controller, error) {
	return newController(cfg, &apiWriter{kube: kube, berth: berth}, rec, m, svcInf, nsInf, poolInf)
}

func newController(cfg Config, w writer, rec record.EventRecorder, m *Metrics,
	svcInf coreinformers.ServiceInformer, nsInf coreinformers.NamespaceInformer, poolInf berthinformers.IPPoolInformer,
) (*Controller, error) {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	c := &Controller{
		cfg:        cfg,
		writer:     w,
		recorder:   rec,
		metrics:    m,
		alloc:      allocator.New(),
		services:   svcInf.Lister(),
		namespaces: nsInf.Lister(),
		pools:      poolInf.Lister(),
		synced:     []cache.InformerSynced{svcInf.Informer().HasSynced, nsInf.Informer().HasSynced, poolInf.Informer().HasSynced},
		svcQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "services"}),
		poolQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "pools"}),
	}
	c.foreign = foreignState{tracked: map[string]struct{}{}, claims: map[netip.Addr][]string{}, claimed: map[string][]netip.Addr{}}
	c.poolConfig.Store(config.For(nil))
	m.watchQueues(c.svcQueue, c.poolQueue)

	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.serviceChanged(nil, obj) },
		UpdateFunc: c.serviceChanged,
		DeleteFunc: func(obj any) { c.serviceChanged(obj, nil) },
	}); err != nil {
		return nil, fmt.Errorf("watch services: %w", err)
	}
	if _, err := poolInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.poolChanged(nil, obj) },
		UpdateFunc: c.poolChanged,
		DeleteFunc: func(obj any) { c.poolChanged(obj, nil) },
	}); err != nil {
		return nil, fmt.Errorf("watch pools: %w", err)
	}
	if _, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: c.namespaceChanged,
	}); err != nil {
		return nil, fmt.Errorf("watch namespaces: %w", err)
	}
	return c, nil
}

// Ready reports whether the controller has rebuilt its state and handles
// changes.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Run waits for the caches, rebuilds the allocations from the Services'
// status, then reconciles until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.svcQueue.ShutDown()
	defer c.poolQueue.ShutDown()
	log := logr.FromContextOrDiscard(ctx)

	log.Info("Waiting for caches")
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("wait for caches: %w", ctx.Err())
	}
	c.rebuildState(ctx)

	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() { wait.UntilWithContext(ctx, c.serviceWorker, time.Second) })
	}
	wg.Go(func() { wait.UntilWithContext(ctx, c.poolWorker, time.Second) })
	<-ctx.Done()
	c.svcQueue.ShutDown()
	c.poolQueue.ShutDown()
	wg.Wait()
	return nil
}

// rebuildState loads the pools and replays the Services' addresses, then
// lets the controller handle changes.
func (c *Controller) rebuildState(ctx context.Context) {
	log := logr.FromContextOrDiscard(ctx)
	start := time.Now()
	c.log = log
	c.rebuildPools(ctx)
	handled, foreign := c.restore(ctx)
	log.Info("Rebuilt allocations from Service status", "services", handled, "foreign", foreign, "duration", time.Since(start))
	c.ready.Store(true)
}

// restore replays every LoadBalancer Service that already has addresses,
// oldest first, so that the allocator learns what is taken before any new
// request is served and, when two Services claim one address, the older
// keeps it. Services the controller handles keep their valid addresses (a
// newer one that loses an address gets another and an Event saying why);
// the others' addresses in the pools are recorded as foreign holdings, so
// an older Service of berth-ccm or any other implementation wins over a
// newer one of Berth's exactly like an older one of Berth's would.
func (c *Controller) restore(ctx context.Context) (handled, foreign int) {
	all, err := c.services.List(labels.Everything())
	if err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "List services from cache")
		return 0, 0
	}
	var held []*corev1.Service
	for _, svc := range all {
		if (c.handles(svc) || c.isForeign(svc)) && len(config.CurrentAddresses(svc)) > 0 {
			held = append(held, svc)
		}
	}
	slices.SortFunc(held, olderFirst)
	log := logr.FromContextOrDiscard(ctx)
	for _, svc := range held {
		key := config.Key(svc)
		if !c.handles(svc) {
			c.syncForeign(log, key)
			foreign++
			continue
		}
		handled++
		if err := c.syncService(ctx, key); err != nil {
			c.svcQueue.AddRateLimited(key)
		}
	}
	for _, svc := range all {
		c.svcQueue.Add(config.Key(svc))
	}
	return handled, foreign
}

func olderFirst(a, b *corev1.Service) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmpString(config.Key(a), config.Key(b))
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// handles reports whether the Service is Berth's to serve.
func (c *Controller) handles(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return c.cfg.HandleUnclassed
	}
	return *svc.Spec.LoadBalancerClass == c.cfg.LoadBalancerClass
}

func (c *Controller) namespaceChanged(oldObj, newObj any) {
	oldNS, ok1 := oldObj.(*corev1.Namespace)
	newNS, ok2 := newObj.(*corev1.Namespace)
	if !ok1 || !ok2 || labels.Equals(oldNS.Labels, newNS.Labels) {
		return
	}
	svcs, err := c.services.Services(newNS.Name).List(labels.Everything())
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	for _, s := range svcs {
		c.svcQueue.Add(config.Key(s))
	}
}

func (c *Controller) poolChanged(oldObj, newObj any) {
	oldPool, _ := oldObj.(*v1alpha1.IPPool)
	newPool, _ := newObj.(*v1alpha1.IPPool)
	if newPool != nil {
		c.poolQueue.Add(newPool.Name)
	} else if oldPool != nil {
		c.poolQueue.Add(oldPool.Name)
	}
	// Status-only updates (most of them are ours) change nothing that
	// allocation depends on.
	if oldPool != nil && newPool != nil && oldPool.Generation == newPool.Generation &&
		oldPool.DeletionTimestamp.Equal(newPool.DeletionTimestamp) {
		return
	}
	c.poolQueue.Add(rebuildKey)
}

func (c *Controller) serviceWorker(ctx context.Context) {
	for c.processNext(ctx, c.svcQueue, c.syncService, "service") {
	}
}

func (c *Controller) poolWorker(ctx context.Context) {
	for c.processNext(ctx, c.poolQueue, c.syncPoolKey, "pool") {
	}
}

func (c *Controller) processNext(ctx context.Context, q workqueue.TypedRateLimitingInterface[string],
	sync func(context.Context, string) error, kind string,
) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	start := time.Now()
	err := sync(ctx, key)
	c.metrics.observeReconcile(kind, time.Since(start), err)
	if err == nil {
		q.Forget(key)
		return true
	}
	utilruntime.HandleErrorWithContext(ctx, err, "Reconcile failed; will retry", kind, key)
	q.AddRateLimited(key)
	return true
}
