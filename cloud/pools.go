package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/allocator"
	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// readyWait bounds how long one call waits for the initial load before it
// asks the service controller to retry.
const readyWait = 30 * time.Second

// foreignPrefix marks the allocator identities of Services the plugin does
// not serve but whose addresses it must not hand out again.
const foreignPrefix = "foreign:"

// Pools is the "pools" backend: addresses from IPPools, decided by the same
// config and allocator packages as berth-controller.
//
// Restart stability: before it answers any call, Start replays every
// Service that already has addresses, oldest first, into the allocator:
// Services the plugin serves keep their valid addresses (passed as
// Current), and every other Service's addresses inside the pools are held
// under a separate identity so they are never handed out twice. After that
// the Service informer keeps the other Services' holdings current.
type Pools struct {
	log   logr.Logger
	alloc *allocator.Allocator
	cfg   atomic.Pointer[config.Config]

	ready   chan struct{}
	readyMu sync.Mutex
	initErr error

	services   corelisters.ServiceLister
	namespaces corelisters.NamespaceLister
	pools      berthlisters.IPPoolLister
}

var _ Backend = (*Pools)(nil)

// NewPools returns a pools backend that answers nothing until Start (or
// Restore, in tests) has loaded the current state.
func NewPools(log logr.Logger) *Pools {
	p := &Pools{log: log, alloc: allocator.New(), ready: make(chan struct{})}
	p.cfg.Store(config.For(nil))
	return p
}

// Start watches IPPools, Services and Namespaces and, once the caches have
// synced, replays the existing allocations and starts answering. It returns
// at once; the work ends with ctx.
func (p *Pools) Start(ctx context.Context, kube kubernetes.Interface, berth versioned.Interface) {
	kubeInf := informers.NewSharedInformerFactory(kube, 0)
	berthInf := berthinformers.NewSharedInformerFactory(berth, 0)
	svcInf := kubeInf.Core().V1().Services()
	nsInf := kubeInf.Core().V1().Namespaces()
	poolInf := berthInf.Berth().V1alpha1().IPPools()
	p.services, p.namespaces, p.pools = svcInf.Lister(), nsInf.Lister(), poolInf.Lister()

	_, err := poolInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.reloadPools() },
		UpdateFunc: func(any, any) { p.reloadPools() },
		DeleteFunc: func(any) { p.reloadPools() },
	})
	if err == nil {
		_, err = svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    p.serviceChanged,
			UpdateFunc: func(_, obj any) { p.serviceChanged(obj) },
			DeleteFunc: p.serviceDeleted,
		})
	}
	if err != nil {
		p.fail(fmt.Errorf("watch: %w", err))
		return
	}
	kubeInf.Start(ctx.Done())
	berthInf.Start(ctx.Done())
	go func() {
		p.log.Info("Waiting for IPPools, Services and Namespaces")
		if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, nsInf.Informer().HasSynced, poolInf.Informer().HasSynced) {
			p.fail(fmt.Errorf("wait for caches: %w", ctx.Err()))
			return
		}
		pools, err := p.pools.List(labels.Everything())
		if err == nil {
			var svcs []*v1.Service
			if svcs, err = p.services.List(labels.Everything()); err == nil {
				p.Restore(pools, svcs)
				return
			}
		}
		p.fail(fmt.Errorf("list from cache: %w", err))
	}()
}

// Restore loads the pools and replays the Services' current addresses,
// oldest Service first so that the older keeps an address two claim, then
// starts answering. Start calls it once the caches have synced.
func (p *Pools) Restore(pools []*v1alpha1.IPPool, svcs []*v1.Service) {
	p.setPools(pools)
	held := slices.Clone(svcs)
	slices.SortFunc(held, olderFirst)
	served, foreign := 0, 0
	for _, svc := range held {
		if len(config.CurrentAddresses(svc)) == 0 {
			continue
		}
		if serves(svc) {
			if _, err := p.assign(svc); err != nil {
				p.log.Info("Could not keep a Service's addresses; the service controller will retry", "service", config.Key(svc), "err", err.Error())
			}
			served++
			continue
		}
		p.holdForeign(svc)
		foreign++
	}
	p.log.Info("Replayed addresses from Service status", "served", served, "other", foreign)
	p.readyMu.Lock()
	defer p.readyMu.Unlock()
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
}

// fail records why the backend cannot start; every call returns it.
func (p *Pools) fail(err error) {
	p.log.Error(err, "Pools backend cannot start")
	p.readyMu.Lock()
	defer p.readyMu.Unlock()
	p.initErr = err
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
}

func (p *Pools) waitReady(ctx context.Context) error {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-p.ready:
		p.readyMu.Lock()
		defer p.readyMu.Unlock()
		return p.initErr
	case <-ctx.Done():
		return fmt.Errorf("wait for IPPools and Services to load: %w", ctx.Err())
	case <-t.C:
		return api.NewRetryError("berth-ccm is still loading IPPools and existing Service addresses", 5*time.Second)
	}
}

func (p *Pools) reloadPools() {
	if p.pools == nil {
		return
	}
	pools, err := p.pools.List(labels.Everything())
	if err != nil {
		p.log.Error(err, "List IPPools from cache")
		return
	}
	p.setPools(pools)
}

func (p *Pools) setPools(pools []*v1alpha1.IPPool) {
	cfg := config.For(pools)
	p.cfg.Store(cfg)
	p.alloc.SetPools(cfg.AllocatorPools())
}

// serves reports whether the plugin, rather than some other implementation,
// serves the Service: the service controller's rule (LoadBalancer, no
// class) minus what the add-on controller has claimed.
func serves(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && refusal(svc) == nil
}

// serviceChanged keeps the holdings of Services the plugin does not serve
// current once the initial replay is done (Restore covers those before).
func (p *Pools) serviceChanged(obj any) {
	svc, ok := obj.(*v1.Service)
	if !ok || !p.isReady() {
		return
	}
	if serves(svc) {
		// Served now (after the add-on controller released it, say): what
		// it showed before is no longer another implementation's.
		p.alloc.Release(foreignPrefix + config.Key(svc))
		return
	}
	if len(config.CurrentAddresses(svc)) == 0 {
		p.alloc.Release(foreignPrefix + config.Key(svc))
		return
	}
	p.holdForeign(svc)
}

func (p *Pools) serviceDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if svc, ok := obj.(*v1.Service); ok {
		p.alloc.Release(foreignPrefix + config.Key(svc))
	}
}

func (p *Pools) isReady() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// holdForeign records the addresses another implementation (usually
// berth-controller) gave a Service, so the plugin never hands them out.
// Addresses outside every pool are none of the allocator's business.
func (p *Pools) holdForeign(svc *v1.Service) {
	req, _ := p.cfg.Load().HoldingRequest(svc, foreignPrefix+config.Key(svc))
	if len(req.Requested) == 0 {
		p.alloc.Release(req.Service)
		return
	}
	if _, err := p.alloc.Assign(req); err != nil {
		p.log.Info("Another implementation's Service holds an address Berth cannot record", "service", config.Key(svc), "err", err.Error())
	}
}

// assign runs the Service through config and allocator exactly like the
// add-on controller does; its current status addresses are kept if valid.
func (p *Pools) assign(svc *v1.Service) ([]allocator.Assignment, error) {
	cfg := p.cfg.Load()
	var nsLabels labels.Set
	if p.namespaces != nil {
		if ns, err := p.namespaces.Get(svc.Namespace); err == nil {
			nsLabels = ns.Labels
		}
	}
	req, err := cfg.Request(svc, nsLabels)
	if err != nil {
		return nil, fmt.Errorf("berth: cannot serve this Service (%s): %w", reasonOf(err), err)
	}
	// The Service is served now: a record of it as another
	// implementation's (before a handover) must not block its own
	// addresses.
	p.alloc.Release(foreignPrefix + config.Key(svc))
	got, err := p.alloc.Assign(req)
	if err != nil {
		return nil, fmt.Errorf("berth: no address from IPPools (%s): %w", reasonOf(err), err)
	}
	return got, nil
}

func reasonOf(err error) string {
	var re *config.RequestError
	if errors.As(err, &re) {
		return re.Reason
	}
	return string(allocator.ReasonOf(err))
}

// Get reports the addresses the allocator holds for the Service: it
// exists exactly when there are some.
func (p *Pools) Get(ctx context.Context, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, false, err
	}
	got := p.alloc.Lookup(config.Key(svc))
	if len(got) == 0 {
		return nil, false, nil
	}
	return p.status(got), true, nil
}

// Ensure allocates, or confirms, the Service's addresses. On failure the
// Service keeps what it held, so a bad edit never costs a working address.
func (p *Pools) Ensure(ctx context.Context, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, err
	}
	got, err := p.assign(svc)
	if err != nil {
		return nil, err
	}
	logr.FromContextOrDiscard(ctx).V(2).Info("Ensured", "service", config.Key(svc), "addresses", addrs(got))
	return p.status(got), nil
}

// Update does nothing: pool addresses do not depend on the node set; the
// speaker follows nodes itself.
func (p *Pools) Update(context.Context, *v1.Service, []*v1.Node) error { return nil }

// Delete releases the Service's addresses; idempotent.
func (p *Pools) Delete(ctx context.Context, svc *v1.Service) error {
	if err := p.waitReady(ctx); err != nil {
		return err
	}
	p.alloc.Release(config.Key(svc))
	return nil
}

// status turns assignments into ingress entries, with each pool's ipMode.
func (p *Pools) status(got []allocator.Assignment) *v1.LoadBalancerStatus {
	cfg := p.cfg.Load()
	st := &v1.LoadBalancerStatus{}
	for _, a := range got {
		mode := v1.LoadBalancerIPModeVIP
		if pool, ok := cfg.Pool(a.Pool); ok && pool.IPMode == v1alpha1.IPModeProxy {
			mode = v1.LoadBalancerIPModeProxy
		}
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: a.Addr.String(), IPMode: &mode})
	}
	return st
}

func olderFirst(a, b *v1.Service) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return strings.Compare(config.Key(a), config.Key(b))
}

// addrs is for log messages.
func addrs(got []allocator.Assignment) []netip.Addr {
	out := make([]netip.Addr, len(got))
	for i, a := range got {
		out[i] = a.Addr
	}
	return out
}
