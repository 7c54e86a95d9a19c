package controller

import (
	"context"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	networkinginformers "k8s.io/client-go/informers/networking/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/config"
)

// clusterKey in the pool queue asks for the cluster's ranges to be read
// again.
const clusterKey = "\x00cluster"

// clusterWatch reads the ranges the cluster uses.
type clusterWatch struct {
	nodes corelisters.NodeLister
	// cidrs is nil when the API server has no ServiceCIDRs.
	cidrs networkinglisters.ServiceCIDRLister
	// built is the fingerprint of the ranges last applied; only the
	// pool worker touches it.
	built string
}

// WatchCluster makes the controller keep every pool off the cluster's
// Service ranges (ServiceCIDR objects), pod ranges (Node spec.podCIDRs)
// and node addresses. Call it before the informers start.
// A nil cidrInf (an API server without ServiceCIDRs) leaves the Service
// ranges out.
func (c *Controller) WatchCluster(nodeInf coreinformers.NodeInformer, cidrInf networkinginformers.ServiceCIDRInformer) error {
	c.cluster = &clusterWatch{nodes: nodeInf.Lister()}
	queue := func(any) { c.poolQueue.Add(clusterKey) }
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: queue,
		// Nodes update their status every few seconds; only addresses
		// and pod ranges matter here.
		UpdateFunc: func(oldObj, newObj any) {
			o, _ := oldObj.(*corev1.Node)
			n, _ := newObj.(*corev1.Node)
			if o == nil || n == nil || !slices.Equal(o.Spec.PodCIDRs, n.Spec.PodCIDRs) || !slices.Equal(o.Status.Addresses, n.Status.Addresses) {
				queue(newObj)
			}
		},
		DeleteFunc: queue,
	}); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	c.synced = append(c.synced, nodeInf.Informer().HasSynced)
	if cidrInf == nil {
		return nil
	}
	c.cluster.cidrs = cidrInf.Lister()
	if _, err := cidrInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: queue, UpdateFunc: func(_, obj any) { queue(obj) }, DeleteFunc: queue,
	}); err != nil {
		return fmt.Errorf("watch service CIDRs: %w", err)
	}
	c.synced = append(c.synced, cidrInf.Informer().HasSynced)
	return nil
}

// rebuildCluster reads the cluster's ranges and, when they changed, hands
// them to the ledger and re-judges the Services whose addresses the
// cluster now uses (they move, with an AddressChanged Event naming the
// cause) and the pools (their ClusterOverlap condition).
func (c *Controller) rebuildCluster(ctx context.Context) {
	if c.cluster == nil {
		return
	}
	log := logr.FromContextOrDiscard(ctx)
	nodes, err := c.cluster.nodes.List(labels.Everything())
	if err != nil {
		log.Error(err, "List nodes from cache")
		return
	}
	var cidrs []*networkingv1.ServiceCIDR
	if c.cluster.cidrs != nil {
		if cidrs, err = c.cluster.cidrs.List(labels.Everything()); err != nil {
			log.Error(err, "List service CIDRs from cache")
			return
		}
	}
	cl := config.ClusterFrom(cidrs, nodes)
	fp := cl.Fingerprint()
	if fp == c.cluster.built {
		return
	}
	c.cluster.built = fp
	log.Info("Cluster ranges changed; no pool hands them out", "serviceRanges", cl.ServiceRanges, "podRanges", len(cl.PodRanges), "nodeAddresses", len(cl.NodeAddresses))
	c.wake(c.ledger.SetCluster(cl))
	c.wake(c.ledger.Invalid())
	if pools, err := c.pools.List(labels.Everything()); err == nil {
		for _, p := range pools {
			c.poolQueue.Add(p.Name)
		}
	}
}
