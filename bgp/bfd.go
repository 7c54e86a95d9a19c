package bgp

import (
	"context"
	"fmt"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/berthlb/berth/bfd"
)

// OnBFD applies a change of the BFD session that watches the path to the
// peer named c.Name, as RFC 5882 §4.3 describes for BGP:
//
//   - Up to Down, unless the neighbor said AdminDown (its BFD was
//     deconfigured, which says nothing of the path), takes the BGP
//     session down at once, with a Cease, and keeps it down
//     (administratively, in GoBGP): connecting again over a dead path is
//     pointless;
//   - Up again releases it: the session is opened at once and announces
//     the whole table (see readd);
//   - a BFD session that never came Up, or that either side deconfigured,
//     holds nothing down (RFC 5882 §3.2: a client must not depend on a
//     BFD session that does not run).
//
// It changes nothing for a peer it does not know, or whose neighbor is not
// configured in GoBGP yet (before its first Advertise).
func (s *Server) OnBFD(ctx context.Context, c bfd.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[c.Name]
	if s.stopped || !ok || !ss.added {
		return nil
	}
	adminDown := c.To == bfd.StateAdminDown || c.RemoteDiag == bfd.DiagAdminDown
	switch {
	case c.From == bfd.StateUp && c.To == bfd.StateDown && !adminDown && !ss.bfdDown:
		why := "BFD down: " + c.Diag.String()
		s.log.Info("Taking the BGP session down: BFD says the path is down", "peer", c.Name, "diag", c.Diag.String())
		if err := ss.readd(ctx, true); err != nil {
			return &PeerError{Peer: c.Name, Err: fmt.Errorf("BFD down: %w", err)}
		}
		ss.bfdDown = true
		ss.logs.remember(why, nil)
	case ss.bfdDown && (c.To == bfd.StateUp || adminDown):
		s.log.Info("Reopening the BGP session: BFD is up again, or no longer watches the path", "peer", c.Name, "bfd", c.To.String())
		ss.bfdDown = false
		if err := ss.readd(ctx, false); err != nil {
			return &PeerError{Peer: c.Name, Err: fmt.Errorf("BFD up: %w", err)}
		}
	}
	return nil
}

// readd configures ss's neighbor afresh in GoBGP, administratively down or
// not. Removing the neighbor closes its session with a Cease (Peer
// De-configured); a new one starts connecting at once, where re-enabling
// one would first wait GoBGP's idle hold time (5 s). The RIB is untouched.
func (ss *session) readd(ctx context.Context, adminDown bool) error {
	if err := ss.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: ss.peer.Address.String()}); err != nil {
		return fmt.Errorf("remove neighbor: %w", err)
	}
	ap := apiPeer(ss.peer, ss.maxReceived)
	ap.Conf.AdminDown = adminDown
	if err := ss.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
		ss.added = false // the next Advertise adds it
		return fmt.Errorf("add neighbor: %w", err)
	}
	return nil
}

// BFDHeldDown reports whether BFD holds the named peer's session down.
func (s *Server) BFDHeldDown(peer string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[peer]
	return ok && ss.bfdDown
}
