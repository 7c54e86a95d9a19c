package cloud

import (
	"context"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	networkinginformers "k8s.io/client-go/informers/networking/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/client/clientset/versioned"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions"
	berthv1alpha1 "github.com/berthlb/berth/client/informers/externalversions/api/v1alpha1"
	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/internal/cli"
	"github.com/berthlb/berth/ledger"
)

// Start watches BerthIPPools, Services and Namespaces and, once the caches have
// synced, replays the existing allocations and starts answering. It returns
// at once; the work ends with ctx.
func (p *Pools) Start(ctx context.Context, kube kubernetes.Interface, berth versioned.Interface) {
	kubeInf := informers.NewSharedInformerFactory(kube, 0)
	berthInf := berthinformers.NewSharedInformerFactory(berth, 0)
	w := &poolsWatch{
		p:     p,
		svcs:  kubeInf.Core().V1().Services(),
		ns:    kubeInf.Core().V1().Namespaces(),
		pools: berthInf.Berth().V1alpha1().BerthIPPools(),
		nodes: kubeInf.Core().V1().Nodes(),
	}
	if served, err := cli.ServesServiceCIDRs(kube.Discovery()); err != nil || !served {
		p.log.Info("Not watching ServiceCIDRs: the API server serves none (Kubernetes < 1.33) or discovery failed; pools are kept off pod ranges and node addresses only", "err", err)
	} else {
		w.cidrs = kubeInf.Networking().V1().ServiceCIDRs()
	}
	p.ledger = ledger.New(ledger.Options{Serves: serves, Services: w.svcs.Lister(), Namespaces: w.ns.Lister(), StatusStaysOnFailure: true})
	if err := w.watch(); err != nil {
		p.fail(fmt.Errorf("watch: %w", err))
		return
	}
	kubeInf.Start(ctx.Done())
	berthInf.Start(ctx.Done())
	go w.restore(ctx)
}

// poolsWatch keeps a Pools backend's ledger current from informers.
type poolsWatch struct {
	p     *Pools
	svcs  corev1informers.ServiceInformer
	ns    corev1informers.NamespaceInformer
	pools berthv1alpha1.BerthIPPoolInformer
	nodes corev1informers.NodeInformer
	// cidrs is nil when the API server serves no ServiceCIDRs.
	cidrs networkinginformers.ServiceCIDRInformer

	clusterMu sync.Mutex
	clusterFP string
}

// watch adds the event handlers: pools reload the ledger's pools, Services
// sync their foreign holdings, Nodes and ServiceCIDRs the cluster's ranges.
func (w *poolsWatch) watch() error {
	_, err := w.pools.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.reloadPools() },
		UpdateFunc: func(any, any) { w.reloadPools() },
		DeleteFunc: func(any) { w.reloadPools() },
	})
	if err != nil {
		return err
	}
	// Every event, also those before the replay, which the ledger keeps
	// until Restore has run.
	_, err = w.svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.syncForeign,
		UpdateFunc: func(_, obj any) { w.syncForeign(obj) },
		DeleteFunc: w.syncForeign,
	})
	if err != nil {
		return err
	}
	for _, inf := range w.clusterInformers() {
		_, err = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { w.reloadCluster() }, UpdateFunc: func(any, any) { w.reloadCluster() }, DeleteFunc: func(any) { w.reloadCluster() },
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// clusterInformers are the informers the cluster's ranges come from.
func (w *poolsWatch) clusterInformers() []cache.SharedIndexInformer {
	out := []cache.SharedIndexInformer{w.nodes.Informer()}
	if w.cidrs != nil {
		out = append(out, w.cidrs.Informer())
	}
	return out
}

func (w *poolsWatch) reloadPools() {
	if list, err := w.pools.Lister().List(labels.Everything()); err != nil {
		w.p.log.Error(err, "List BerthIPPools from cache")
	} else {
		w.p.ledger.SetPools(list)
	}
}

// reloadCluster gives the ledger the ranges the cluster uses (the same rule
// as berth-controller's), when they changed: no pool hands them out.
func (w *poolsWatch) reloadCluster() {
	w.clusterMu.Lock()
	defer w.clusterMu.Unlock()
	nodes, err := w.nodes.Lister().List(labels.Everything())
	if err != nil {
		return
	}
	var cidrs []*networkingv1.ServiceCIDR
	if w.cidrs != nil {
		if cidrs, err = w.cidrs.Lister().List(labels.Everything()); err != nil {
			return
		}
	}
	if cl := config.ClusterFrom(cidrs, nodes); cl.Fingerprint() != w.clusterFP {
		w.clusterFP = cl.Fingerprint()
		w.p.ledger.SetCluster(cl)
	}
}

func (w *poolsWatch) syncForeign(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	w.p.ledger.SyncForeign(key)
	// What others hold, once recorded: the end-to-end tests wait for it
	// before the next allocation.
	if held := w.p.ledger.Lookup(ledger.ForeignPrefix + key); len(held) > 0 {
		w.p.log.V(4).Info("Holding another implementation's addresses", "service", key, "addresses", addrs(held))
	}
}

// restore waits for the caches, then replays the existing allocations
// (Pools.Restore), or fails the backend.
func (w *poolsWatch) restore(ctx context.Context) {
	w.p.log.Info("Waiting for BerthIPPools, Services and Namespaces")
	synced := []cache.InformerSynced{w.svcs.Informer().HasSynced, w.ns.Informer().HasSynced, w.pools.Informer().HasSynced}
	for _, inf := range w.clusterInformers() {
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		w.p.fail(fmt.Errorf("wait for caches: %w", ctx.Err()))
		return
	}
	w.reloadCluster()
	list, err := w.pools.Lister().List(labels.Everything())
	if err == nil {
		var svcs []*v1.Service
		if svcs, err = w.svcs.Lister().List(labels.Everything()); err == nil {
			w.p.Restore(list, svcs)
			return
		}
	}
	w.p.fail(fmt.Errorf("list from cache: %w", err))
}
