package speaker

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"

	"github.com/berthlb/berth/bfd"
	"github.com/berthlb/berth/bgp"
)

// bfdSessions is what the speaker needs of the BFD back end.
type bfdSessions interface {
	Set(ctx context.Context, sessions []bfd.Session) error
}

// bfdFollower is what BFD's changes are applied to: the BGP back end
// (bgp.Server.OnBFD).
type bfdFollower interface {
	OnBFD(ctx context.Context, c bfd.Change) error
}

// startBFD starts the BFD back end, whose changes take the BGP sessions
// down and up again; stop ends its sessions (AdminDown, so that the
// routers do not take a speaker's exit for a failure). It must follow
// startBGP.
func (s *Speaker) startBFD(ctx context.Context) (stop func()) {
	log := logr.FromContextOrDiscard(ctx)
	follower, ok := s.bgp.(bfdFollower)
	if !ok {
		return func() {}
	}
	srv, err := bfd.New(ctx, bfd.Options{Transport: bfd.NewUDP(), OnChange: func(c bfd.Change) {
		if err := follower.OnBFD(ctx, c); err != nil {
			log.Error(err, "Apply a BFD change to the BGP session", "peer", c.Name)
		}
	}})
	if err != nil { // only without a transport
		log.Error(err, "Start BFD")
		return func() {}
	}
	s.bfd = srv
	return func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Close(stopCtx); err != nil {
			log.Error(err, "Stop BFD")
		}
	}
}

// applyBFD runs a BFD session for each configured peer whose BerthBGPPeer asks
// for one, and none for the others.
func (s *Speaker) applyBFD(ctx context.Context, snap Snapshot) error {
	if s.bfd == nil {
		return nil
	}
	s.mu.Lock()
	applied := s.applied
	s.mu.Unlock()
	if err := s.bfd.Set(ctx, bfdSessionsFor(snap, applied)); err != nil {
		return fmt.Errorf("BFD: %w", err)
	}
	return nil
}

// bfdSessionsFor converts the BFD profile of each peer in peers (what the
// BGP back end runs, by name) that has one.
func bfdSessionsFor(snap Snapshot, peers map[string]bgp.Peer) []bfd.Session {
	var out []bfd.Session
	for _, bp := range snap.Peers {
		p, ok := peers[bp.Name]
		prof := bp.Spec.BFD
		if !ok || prof == nil {
			continue
		}
		ms := func(v *int32) time.Duration {
			if v == nil {
				return 0 // the default
			}
			return time.Duration(*v) * time.Millisecond
		}
		var mult uint8
		if v := prof.Multiplier; v != nil && *v > 0 && *v <= 255 {
			mult = uint8(*v)
		}
		out = append(out, bfd.Session{
			Name:     p.Name,
			Peer:     p.Address,
			Local:    p.SourceAddress,
			Multihop: prof.Multihop,
			Timers:   bfd.Timers{MinTx: ms(prof.MinTxMillis), MinRx: ms(prof.MinRxMillis), Multiplier: mult},
		})
	}
	return out
}
