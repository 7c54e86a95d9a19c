package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Status returns the state of every configured peer, sorted by name.
func (s *Server) Status(ctx context.Context) ([]PeerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.sessions))
	for _, n := range slices.Sorted(maps.Keys(s.sessions)) {
		st, err := s.sessions[n].status(ctx)
		if err != nil {
			return nil, fmt.Errorf("bgp: status of %q: %w", n, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// status asks GoBGP about ss's neighbor.
func (ss *session) status(ctx context.Context) (PeerStatus, error) {
	st := PeerStatus{Name: ss.peer.Name, Address: ss.peer.Address, State: StateIdle, LastError: ss.logs.lastError()}
	if !ss.added {
		return st, nil
	}
	var found *api.Peer
	err := ss.bgp.ListPeer(ctx, &api.ListPeerRequest{Address: ss.peer.Address.String(), EnableAdvertised: true}, func(p *api.Peer) {
		found = p
	})
	if err != nil {
		return st, fmt.Errorf("list neighbor: %w", err)
	}
	if found == nil {
		return st, errors.New("list neighbor: GoBGP does not know it")
	}
	st.State = sessionState(found.GetState().GetSessionState())
	st.Flaps = found.GetState().GetFlops()
	st.UpdatesSent = found.GetState().GetMessages().GetSent().GetUpdate()
	if up := found.GetTimers().GetState().GetUptime(); st.State == StateEstablished && up != nil {
		st.Uptime = time.Since(up.AsTime()).Truncate(time.Millisecond)
	}
	for _, as := range found.GetAfiSafis() {
		st.PrefixesSent += as.GetState().GetAdvertised()
		st.PrefixesReceived += as.GetState().GetReceived()
	}
	if found.GetState().GetAdminState() == api.PeerState_PFX_CT {
		// Later warnings would hide it, and it needs action.
		st.LastError = fmt.Sprintf("prefix limit reached: the neighbor sent more than %d prefixes of a family (Berth uses none); "+
			"the session is closed and tried again later: make the router send the speakers nothing", ss.maxReceived)
	}
	if st.State != StateEstablished && ss.peer.Password != "" && strings.Contains(st.LastError, "timeout") {
		// A TCP MD5 mismatch is silent: the neighbor's kernel drops our
		// SYNs, so all we see is connections timing out.
		st.LastError += " (TCP MD5 is configured: a password mismatch with the neighbor looks exactly like this)"
	}
	return st, nil
}

// Stop stops every session and the server; the Server cannot be used
// afterwards. Sessions with GracefulRestart end without a NOTIFICATION
// (their TCP connection is closed), so the neighbor keeps our routes for
// RestartTime while the speaker restarts; sessions without it are closed
// with a Cease, and the neighbor withdraws our routes at once.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(s.sessions)) {
		ss := s.sessions[n]
		if err := ss.stop(ctx, ss.peer.GracefulRestart, false); err != nil {
			errs = append(errs, fmt.Errorf("bgp: stop peer %q: %w", n, err))
		}
	}
	s.sessions = nil
	return errors.Join(errs...)
}

// stop ends ss's GoBGP instance. With graceful, the session's TCP
// connection is shut down first, because GoBGP's StopBgp always sends a
// Cease (RFC 4724: the neighbor then drops our routes). With free, the RIB
// is emptied first (withdrawing the routes, which a removed peer loses
// anyway), since GoBGP's never-ending Serve goroutine would keep it.
func (ss *session) stop(ctx context.Context, graceful, free bool) error {
	ss.stopWatch()
	var errs []error
	if graceful && ss.added {
		if err := ss.abortConnection(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if free {
		if err := ss.bgp.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL}); err != nil {
			errs = append(errs, fmt.Errorf("empty RIB: %w", err))
		}
		ss.routes = nil
	}
	if err := ss.bgp.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("stop GoBGP: %w", err))
	}
	return errors.Join(errs...)
}

// abortConnection shuts down the TCP connection of ss's session, if it is
// established, without any BGP message.
func (ss *session) abortConnection(ctx context.Context) error {
	var local netip.Addr
	var remotePort uint32
	err := ss.bgp.ListPeer(ctx, &api.ListPeerRequest{Address: ss.peer.Address.String()}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		local, _ = netip.ParseAddr(p.GetTransport().GetLocalAddress())
		remotePort = p.GetTransport().GetRemotePort()
	})
	if err != nil {
		return fmt.Errorf("list neighbor: %w", err)
	}
	if !local.IsValid() {
		return nil // no session: nothing to keep alive for the neighbor
	}
	if remotePort == 0 {
		remotePort = uint32(ss.peer.Port)
	}
	n, err := shutdownTCP(local, netip.AddrPortFrom(ss.peer.Address, uint16(remotePort)))
	if err != nil {
		return fmt.Errorf("close connection without NOTIFICATION: %w", err)
	}
	if n == 0 {
		return errors.New("close connection without NOTIFICATION: socket not found")
	}
	return nil
}
