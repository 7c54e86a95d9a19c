package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Server is the node's BGP speaker: one GoBGP instance per peer, driven
// declaratively. It is safe for concurrent use; calls are serialised.
type Server struct {
	cfg Config
	log logr.Logger

	mu       sync.Mutex
	sessions map[string]*session
	stopped  bool
}

// session is one peer and the GoBGP instance that talks to it.
type session struct {
	peer Peer // defaults applied
	bgp  *server.BgpServer
	logs *logAdapter
	// added is set once the neighbor is configured in GoBGP, which
	// happens on the peer's first Advertise; see doc.go.
	added bool
	// routes is what is announced (in GoBGP's RIB), by prefix.
	routes map[netip.Prefix]Advertisement
	// maxReceived is the neighbor's prefix limit per family.
	maxReceived uint32
	// stopWatch ends watchPrefixLimit.
	stopWatch context.CancelFunc
	// bfdDown says BFD holds the session down (see bfd.go).
	bfdDown bool
}

// New validates cfg and returns a Server with no peers. It logs to the
// logr.Logger in ctx (logr.FromContextOrDiscard).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := validateConfig(cfg); err != nil {
		return nil, fmt.Errorf("bgp: new: %w", err)
	}
	return &Server{
		cfg:      cfg,
		log:      logr.FromContextOrDiscard(ctx).WithName("bgp"),
		sessions: map[string]*session{},
	}, nil
}

// SetPeers makes the configured peers exactly peers: it adds the new ones,
// removes (and so tears down the sessions of) the gone ones, and resets the
// session of each changed peer, keeping its advertisements. Unchanged peers
// are not touched. Each peer succeeds or fails alone: a peer that fails
// validation (or whose address another peer already has) is left as it is,
// with its current session if it has one, and a peer that fails to apply
// does not stop the others. The returned error joins a *PeerError for each
// failed peer (see PeerErrors).
func (s *Server) SetPeers(ctx context.Context, peers []Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("bgp: set peers: server stopped")
	}
	cur := make(map[string]Peer, len(s.sessions))
	for n, ss := range s.sessions {
		cur[n] = ss.peer
	}
	want, bad := validatePeers(peers, cur, s.cfg.RouterID)
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(bad)) {
		errs = append(errs, &PeerError{Peer: n, Err: bad[n]})
		if c, ok := cur[n]; ok {
			want[n] = c // keep what it has
		}
	}
	add, remove, reset := diffPeers(cur, want)
	for _, n := range remove {
		s.log.Info("Removing peer", "peer", n)
		if err := s.sessions[n].stop(ctx, false, true); err != nil {
			errs = append(errs, &PeerError{Peer: n, Err: fmt.Errorf("remove: %w", err)})
		}
		delete(s.sessions, n)
	}
	for _, n := range reset {
		s.log.Info("Resetting changed peer", "peer", n)
		if err := s.reset(ctx, s.sessions[n], want[n]); err != nil {
			errs = append(errs, &PeerError{Peer: n, Err: fmt.Errorf("reset: %w", err)})
		}
	}
	for _, n := range add {
		s.log.Info("Adding peer", "peer", n, "address", want[n].Address)
		ss, err := s.start(ctx, want[n])
		if err != nil {
			errs = append(errs, &PeerError{Peer: n, Err: fmt.Errorf("add: %w", err)})
			continue
		}
		s.sessions[n] = ss
	}
	return errors.Join(errs...)
}

// start creates and starts the GoBGP instance for p, with no neighbor yet.
func (s *Server) start(ctx context.Context, p Peer) (*session, error) {
	logs := newLogAdapter(s.log.WithValues("peer", p.Name), p.Password)
	b := server.NewBgpServer(server.LoggerOption(logs))
	// Serve never returns in GoBGP v3: one goroutine per peer outlives
	// the peer's removal (with an empty RIB; see session.stop).
	go b.Serve()
	if err := startBgp(ctx, b, s.cfg, p); err != nil {
		return nil, err
	}
	ss := &session{peer: p, bgp: b, logs: logs, routes: map[netip.Prefix]Advertisement{}, maxReceived: s.cfg.maxReceived(p)}
	wctx, cancel := context.WithCancel(context.Background())
	ss.stopWatch = cancel
	go ss.watchPrefixLimit(wctx, s.log.WithValues("peer", p.Name), s.cfg.prefixLimitRetry())
	return ss, nil
}

// prefixLimitRetry is cfg's PrefixLimitRetry, defaults applied.
func (cfg Config) prefixLimitRetry() time.Duration {
	if cfg.PrefixLimitRetry <= 0 {
		return DefaultPrefixLimitRetry
	}
	return cfg.PrefixLimitRetry
}

// maxReceived is p's prefix limit: its own, else cfg's, else the default.
func (cfg Config) maxReceived(p Peer) uint32 {
	if p.MaxReceivedPrefixes != 0 {
		return p.MaxReceivedPrefixes
	}
	if cfg.MaxReceivedPrefixes == 0 {
		return DefaultMaxReceivedPrefixes
	}
	return cfg.MaxReceivedPrefixes
}

// startBgp starts b's global instance for p and sets its import policy
// to accept only our own routes (see importPolicy); StartBgp begins with
// an empty RIB and no policy.
func startBgp(ctx context.Context, b *server.BgpServer, cfg Config, p Peer) error {
	if err := b.StartBgp(ctx, &api.StartBgpRequest{Global: apiGlobal(p)}); err != nil {
		return fmt.Errorf("start GoBGP: %w", err)
	}
	if err := b.AddPolicy(ctx, &api.AddPolicyRequest{Policy: importPolicy()}); err != nil {
		return fmt.Errorf("add import policy: %w", err)
	}
	if err := b.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: importAssignment()}); err != nil {
		return fmt.Errorf("set import policy: %w", err)
	}
	return nil
}

// reset tears down ss's session and brings it back as p, re-announcing the
// routes that are still valid for p.
func (s *Server) reset(ctx context.Context, ss *session, p Peer) error {
	if err := ss.bgp.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		return fmt.Errorf("stop GoBGP: %w", err)
	}
	ss.peer = p
	ss.maxReceived = s.cfg.maxReceived(p)
	ss.logs.setPassword(p.Password)
	if err := startBgp(ctx, ss.bgp, s.cfg, p); err != nil {
		return err
	}
	// StartBgp begins with an empty RIB.
	old := ss.routes
	ss.routes = make(map[netip.Prefix]Advertisement, len(old))
	for _, pfx := range slices.SortedFunc(maps.Keys(old), comparePrefix) {
		a := old[pfx]
		if err := validateAdvertisement(p, a); err != nil {
			s.log.Info("Dropping route the changed peer cannot carry", "peer", p.Name, "reason", err.Error())
			continue
		}
		if err := ss.announce(ctx, a); err != nil {
			return err
		}
	}
	if !ss.added {
		return nil
	}
	if err := ss.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, ss.maxReceived)}); err != nil {
		ss.added = false
		return fmt.Errorf("add neighbor: %w", err)
	}
	return nil
}

// Advertise makes the routes announced to the named peer exactly advs. It
// announces what is new or changed (replacing a route in place, without a
// withdrawal) and withdraws what is gone; no session is reset. Each address
// family is applied alone: an invalid route, or a failure, leaves that
// family's routes as they were (the error is a *PeerError naming the
// family) and the other family is still applied. The peer's session is
// first opened by its first Advertise (an empty one will do), so that a
// restarted speaker sends its whole table before End-of-RIB.
func (s *Server) Advertise(ctx context.Context, peer string, advs []Advertisement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[peer]
	switch {
	case s.stopped:
		return fmt.Errorf("bgp: advertise to %q: server stopped", peer)
	case !ok:
		return &PeerError{Peer: peer, Err: fmt.Errorf("advertise: %w: no such peer", ErrInvalid)}
	}
	byFamily := map[Family][]Advertisement{}
	for _, a := range advs {
		f := familyOf(a.Prefix.Addr())
		byFamily[f] = append(byFamily[f], a)
	}
	var errs []error
	for _, f := range []Family{IPv4Unicast, IPv6Unicast} {
		if err := ss.advertiseFamily(ctx, f, byFamily[f]); err != nil {
			errs = append(errs, &PeerError{Peer: peer, Family: f, Err: fmt.Errorf("advertise: %w", err)})
		}
	}
	if !ss.added {
		if err := ss.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(ss.peer, ss.maxReceived)}); err != nil {
			errs = append(errs, &PeerError{Peer: peer, Err: fmt.Errorf("advertise: add neighbor: %w", err)})
			return errors.Join(errs...)
		}
		ss.added = true
	}
	return errors.Join(errs...)
}

// advertiseFamily makes ss's routes of family f exactly advs, all of which
// are of that family.
func (ss *session) advertiseFamily(ctx context.Context, f Family, advs []Advertisement) error {
	want, err := validateAdvertisements(ss.peer, advs)
	if err != nil {
		return err
	}
	cur := make(map[netip.Prefix]Advertisement, len(ss.routes))
	for pfx, a := range ss.routes {
		if familyOf(pfx.Addr()) == f {
			cur[pfx] = a
		}
	}
	announce, withdraw := diffAdvertisements(cur, want)
	for _, pfx := range withdraw {
		if err := ss.withdraw(ctx, pfx); err != nil {
			return err
		}
	}
	for _, a := range announce {
		if err := ss.announce(ctx, a); err != nil {
			return err
		}
	}
	if len(announce)+len(withdraw) > 0 {
		ss.logs.log.V(1).Info("Updated advertisements", "family", f, "announced", len(announce), "withdrawn", len(withdraw), "total", len(ss.routes))
	}
	return nil
}

// announce adds a to the RIB (replacing any route for its prefix).
func (ss *session) announce(ctx context.Context, a Advertisement) error {
	p, err := apiPath(ss.peer, a)
	if err != nil {
		return err
	}
	if _, err := ss.bgp.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
		return fmt.Errorf("announce %v: %w", a.Prefix, err)
	}
	ss.routes[a.Prefix] = a
	return nil
}

// withdraw removes the route for pfx from the RIB.
func (ss *session) withdraw(ctx context.Context, pfx netip.Prefix) error {
	p, err := apiPath(ss.peer, ss.routes[pfx])
	if err != nil {
		return err
	}
	if err := ss.bgp.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
		return fmt.Errorf("withdraw %v: %w", pfx, err)
	}
	delete(ss.routes, pfx)
	return nil
}
