package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/api/v1alpha1"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	berthinformers "github.com/berthlb/berth/client/informers/externalversions/api/v1alpha1"
)

// peerSessionsKey is the pool queue's key for the BerthBGPPeers' session counts:
// one key, so that a burst of node status changes costs one pass.
const peerSessionsKey = "\x00peer-sessions"

// WatchNodeStatuses makes the controller count, per BerthBGPPeer, the nodes
// with a session and those whose session is Established, from the
// speakers' BerthNodeStatuses, into the peer's status (printer columns):
// one writer for the peer-wide numbers, N speakers each writing only their
// node's object. Call it after WatchAdvertisements, before the informers
// start.
func (c *Controller) WatchNodeStatuses(inf berthinformers.BerthNodeStatusInformer) error {
	if c.advs == nil {
		return fmt.Errorf("watch node statuses: WatchAdvertisements first")
	}
	c.nodeStatuses = inf.Lister()
	queue := func(any) { c.poolQueue.Add(peerSessionsKey) }
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: queue, UpdateFunc: func(_, obj any) { queue(obj) }, DeleteFunc: queue,
	}); err != nil {
		return fmt.Errorf("watch node statuses: %w", err)
	}
	c.synced = append(c.synced, inf.Informer().HasSynced)
	return nil
}

// syncPeerSessions writes each BerthBGPPeer's session counts that changed.
func (c *Controller) syncPeerSessions(ctx context.Context) error {
	nodes, err := c.nodeStatuses.List(labels.Everything())
	if err != nil {
		return err
	}
	total, up := map[string]int32{}, map[string]int32{}
	for _, n := range nodes {
		for _, s := range n.Status.Sessions {
			total[s.Peer]++
			if s.State == "Established" {
				up[s.Peer]++
			}
		}
	}
	peers, err := c.advs.peers.List(labels.Everything())
	if err != nil {
		return err
	}
	slices.SortFunc(peers, func(a, b *v1alpha1.BerthBGPPeer) int { return strings.Compare(a.Name, b.Name) })
	var errs []error
	for _, p := range peers {
		if p.Status.Sessions == total[p.Name] && p.Status.SessionsEstablished == up[p.Name] {
			continue
		}
		ac := berthac.BerthBGPPeer(p.Name).WithStatus(berthac.BerthBGPPeerStatus().
			WithSessions(total[p.Name]).WithSessionsEstablished(up[p.Name]))
		if err := c.writer.applyBGPPeerStatus(ctx, ac); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
