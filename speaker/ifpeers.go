package speaker

import (
	"context"
	"net/netip"
	"time"

	"github.com/go-logr/logr"

	"github.com/berthlb/berth/bgp"
)

// linkLocalResolver finds an interface peer's address: the one IPv6
// link-local neighbor on the node's interface (bgp.LinkLocalNeighbor).
type linkLocalResolver func(ifname string) (netip.Addr, error)

// linkLocalAnnouncer sends a Router Advertisement on an interface, for
// the router to learn the node's link-local address
// (bgp.AnnounceLinkLocal).
type linkLocalAnnouncer func(ifname string) error

// Interface peers are looked up again with back-off while one is not
// found (the router's first Router Advertisement may come much later),
// and every neighborRecheck once all are, for a router that was replaced;
// the node's own Router Advertisements go out on every sync and every
// neighborRecheck.
const (
	neighborRetryMin = time.Second
	neighborRetryMax = 30 * time.Second
	neighborRecheck  = 10 * time.Second
)

// resolveInterfaces gives each interface peer of peers its address, the
// link-local neighbor on its interface, and returns the peers to
// configure and, by name, why an interface peer's neighbor was not found.
// Such a peer keeps the address it runs with (applied) if it runs on the
// same interface (the link flapped, say, and its session comes back by
// itself); else it is left out: the node has no session with it until the
// neighbor is found. Peers bound to no interface pass unchanged.
func resolveInterfaces(peers []bgp.Peer, applied map[string]bgp.Peer, resolve linkLocalResolver) ([]bgp.Peer, map[string]string) {
	out := make([]bgp.Peer, 0, len(peers))
	unresolved := map[string]string{}
	for _, p := range peers {
		if p.Interface == "" {
			out = append(out, p)
			continue
		}
		addr, err := resolve(p.Interface)
		if err == nil {
			p.Address = addr
			out = append(out, p)
			continue
		}
		unresolved[p.Name] = err.Error()
		if old, ok := applied[p.Name]; ok && old.Interface == p.Interface && old.Address.IsValid() {
			unresolved[p.Name] += "; the session stays with " + old.Address.String() + ", found before"
			p.Address = old.Address
			out = append(out, p)
		}
	}
	return out, unresolved
}

// retryNeighbors schedules the next sync while an interface peer's
// neighbor is not found, with back-off: from neighborRetryMin, doubling up
// to neighborRetryMax; any other event syncs sooner. Called from the sync
// loop only.
func (s *Speaker) retryNeighbors(ctx context.Context, unresolved map[string]string) {
	if len(unresolved) == 0 {
		s.neighborRetry = 0
		return
	}
	s.neighborRetry = min(max(2*s.neighborRetry, neighborRetryMin), neighborRetryMax)
	logr.FromContextOrDiscard(ctx).V(1).Info("Interface peers without a neighbor; looking again later", "peers", len(unresolved), "after", s.neighborRetry)
	s.queue.AddAfter(syncKey, s.neighborRetry)
}

// announceInterfaces sends a Router Advertisement on the interface of
// each interface peer of peers: a router configured for BGP unnumbered
// peers only with the sources of the Router Advertisements it hears. An
// interface that does not exist (yet) is skipped.
func (s *Speaker) announceInterfaces(ctx context.Context, peers []bgp.Peer) {
	if s.announceLinkLocal == nil {
		return
	}
	done := map[string]bool{}
	for _, p := range peers {
		if p.Interface == "" || done[p.Interface] {
			continue
		}
		done[p.Interface] = true
		if err := s.announceLinkLocal(p.Interface); err != nil {
			logr.FromContextOrDiscard(ctx).V(1).Info("No Router Advertisement for an interface peer", "peer", p.Name, "reason", err.Error())
		}
	}
}

// checkNeighbors announces the node on its interface peers' interfaces,
// and syncs when an interface peer's link-local neighbor is no longer the
// one its session was configured with (the router was replaced): a sync
// configures the new one.
func (s *Speaker) checkNeighbors(ctx context.Context) {
	s.mu.Lock()
	applied := s.applied
	var planned []bgp.Peer
	if s.lastPlan != nil {
		planned = s.lastPlan.Peers
	}
	s.mu.Unlock()
	s.announceInterfaces(ctx, planned)
	if s.linkLocal == nil {
		return
	}
	for _, p := range applied {
		if p.Interface == "" {
			continue
		}
		if addr, err := s.linkLocal(p.Interface); err == nil && addr != p.Address {
			s.queue.Add(syncKey)
			return
		}
	}
}
