package controller

import (
	"context"
	"fmt"
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

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions/api/v1alpha1"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/internal/serve"
	"github.com/berthlb/berth/ledger"
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
	// stall tells /healthz whether a reconcile is stuck; nil watches
	// nothing.
	stall *serve.Stall

	services   corelisters.ServiceLister
	namespaces corelisters.NamespaceLister
	pools      berthlisters.BerthIPPoolLister
	synced     []cache.InformerSynced

	svcQueue  workqueue.TypedRateLimitingInterface[string]
	poolQueue workqueue.TypedRateLimitingInterface[string]

	// ledger records who holds which address; shared in kind with
	// berth-ccm's pools backend.
	ledger    *ledger.Ledger
	rebuildMu sync.Mutex
	builtFrom string // poolsFingerprint of the last rebuild; guarded by rebuildMu
	ready     atomic.Bool
	// written holds a lastWrite per Service key.
	written sync.Map
	// nodeStatuses is set by WatchNodeStatuses.
	nodeStatuses berthlisters.BerthNodeStatusLister
	// advs is set by WatchAdvertisements.
	advs *advertisements
	// cluster is set by WatchCluster.
	cluster *clusterWatch
	// log is the logger of Run, for the Service event handler; written
	// before ready is set and read only after.
	log logr.Logger
	// uninstall is set by WatchUninstall.
	uninstall uninstallMark
}

// rebuildKey in the pool queue asks for the pool configuration to be rebuilt.
const rebuildKey = ""

// New wires a Controller to its informers and to the API server it writes
// to. The informers must be started by the caller after New, so that the
// handlers are registered.
func New(cfg Config, kube kubernetes.Interface, berth versioned.Interface, rec record.EventRecorder, m *Metrics,
	svcInf coreinformers.ServiceInformer, nsInf coreinformers.NamespaceInformer, poolInf berthinformers.BerthIPPoolInformer,
) (*Controller, error) {
	return newController(cfg, &apiWriter{kube: kube, berth: berth}, rec, m, svcInf, nsInf, poolInf)
}

func newController(cfg Config, w writer, rec record.EventRecorder, m *Metrics,
	svcInf coreinformers.ServiceInformer, nsInf coreinformers.NamespaceInformer, poolInf berthinformers.BerthIPPoolInformer,
) (*Controller, error) {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	c := &Controller{
		cfg:        cfg,
		writer:     w,
		recorder:   rec,
		metrics:    m,
		services:   svcInf.Lister(),
		namespaces: nsInf.Lister(),
		pools:      poolInf.Lister(),
		synced:     []cache.InformerSynced{svcInf.Informer().HasSynced, nsInf.Informer().HasSynced, poolInf.Informer().HasSynced},
		svcQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "services", MetricsProvider: m.queues}),
		poolQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "pools", MetricsProvider: m.queues}),
	}
	c.ledger = ledger.New(ledger.Options{
		Serves:      c.handles,
		Services:    c.services,
		Namespaces:  c.namespaces,
		PoolChanged: func(pool string) { c.poolQueue.AddAfter(pool, c.cfg.PoolStatusDelay) },
		// berth-ccm, sharing pools, cannot move its Services by itself.
		YieldToForeign: true,
		Moved:          c.svcQueue.Add,
	})
	m.pending.watch(c.services)

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
		// A Service created together with its Namespace may be judged
		// before the Namespace reaches the cache; it waits for it.
		AddFunc:    func(obj any) { c.namespaceChanged(nil, obj) },
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
	c.rebuildCluster(ctx)
	c.rebuildPools(ctx)
	handled, foreign := c.restore(ctx)
	log.Info("Rebuilt allocations from Service status", "services", handled, "foreign", foreign, "duration", time.Since(start))
	c.ready.Store(true)
}

// restore rebuilds the record from the Services' status before any change
// is handled: first every address still valid for the Service showing it,
// oldest first, for the Services the controller handles and for those of
// other implementations (held as foreign, so an older Service of berth-ccm
// wins over a newer one of Berth's exactly like an older one of Berth's
// would); then, oldest first, each handled Service is judged, so that one
// whose address became invalid gets a free one and never another's.
func (c *Controller) restore(ctx context.Context) (handled, foreign int) {
	all, err := c.services.List(labels.Everything())
	if err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "List services from cache")
		return 0, 0
	}
	served, foreign := c.ledger.Restore(all)
	for _, svc := range served {
		key := config.Key(svc)
		if err := c.syncService(ctx, key); err != nil {
			c.svcQueue.AddRateLimited(key)
		}
	}
	for _, svc := range all {
		c.svcQueue.Add(config.Key(svc))
	}
	return len(served), foreign
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
	oldNS, _ := oldObj.(*corev1.Namespace)
	newNS, ok := newObj.(*corev1.Namespace)
	if !ok || (oldNS != nil && labels.Equals(oldNS.Labels, newNS.Labels)) {
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
	oldPool, _ := oldObj.(*v1alpha1.BerthIPPool)
	newPool, _ := newObj.(*v1alpha1.BerthIPPool)
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
	end := c.stall.Begin()
	err := sync(ctx, key)
	end()
	c.metrics.observeReconcile(kind, time.Since(start), err)
	if err == nil {
		q.Forget(key)
		return true
	}
	utilruntime.HandleErrorWithContext(ctx, err, "Reconcile failed; will retry", kind, key)
	q.AddRateLimited(key)
	return true
}
