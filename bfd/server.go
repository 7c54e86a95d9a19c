package bfd

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Session configures one BFD session.
type Session struct {
	// Name identifies the session in Set and in Changes (the BGP peer's
	// name).
	Name string
	// Peer is the neighbor's address.
	Peer netip.Addr
	// Local, if valid, is the address to send from; otherwise the
	// transport picks the one the route to Peer uses.
	Local netip.Addr
	// Multihop selects RFC 5883 (port 4784, any TTL) over RFC 5881 (port
	// 3784, TTL 255 both ways).
	Multihop bool
	// Timers are the intervals and multiplier; zero fields take the
	// defaults.
	Timers Timers
}

// key identifies a session on the wire before the neighbor knows our
// discriminator: by its addresses and kind (RFC 5881 §3).
type key struct {
	peer, local netip.Addr
	multihop    bool
}

func (s Session) key() key { return key{s.Peer, s.Local, s.Multihop} }

// Change is a session's change of state, as reported to Options.OnChange.
type Change struct {
	Name string
	Peer netip.Addr
	// At is when the session changed state.
	At time.Time
	Transition
}

// Received is a packet the transport received.
type Received struct {
	Data     []byte
	From, To netip.Addr
	// Multihop says which port it came to (4784 rather than 3784).
	Multihop bool
}

// Sender sends one session's packets.
type Sender interface {
	Send(b []byte) error
	Close() error
}

// Transport carries the packets (UDP is the real one).
type Transport interface {
	// Open returns a sender for a session and makes sure that packets of
	// its kind and family are received, which go to the function that
	// Receive set. It returns the local address it sends from.
	Open(local, peer netip.Addr, multihop bool) (Sender, netip.Addr, error)
	// Receive sets where received packets go; it is called once, before
	// Open.
	Receive(deliver func(Received))
	// Close stops receiving.
	Close() error
}

// Options configure a Server.
type Options struct {
	// Transport carries the packets.
	Transport Transport
	// OnChange is told about every change of a session's state, in order,
	// from a goroutine of its own: it may block without disturbing the
	// sessions' timers.
	OnChange func(Change)
}

// Server runs BFD sessions (see doc.go). It is safe for concurrent
// use.
type Server struct {
	opts  Options
	log   logr.Logger
	note  *notifier
	sched *scheduler

	mu       sync.Mutex
	byName   map[string]*runner
	byDiscr  map[uint32]*runner
	byKey    map[key]*runner
	closed   bool
	draining sync.WaitGroup
}

// New returns a Server with no session. It logs to the logr.Logger in ctx.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Transport == nil {
		return nil, errors.New("bfd: new: no transport")
	}
	s := &Server{
		opts:    opts,
		log:     logr.FromContextOrDiscard(ctx).WithName("bfd"),
		note:    newNotifier(opts.OnChange),
		sched:   newScheduler(),
		byName:  map[string]*runner{},
		byDiscr: map[uint32]*runner{},
		byKey:   map[key]*runner{},
	}
	opts.Transport.Receive(s.deliver)
	return s, nil
}

// Set makes the sessions exactly sessions: new ones start in Down, removed
// ones are taken AdminDown (so that the neighbor does not take it for a
// failure) and stop after telling it so, and those whose timers changed
// renegotiate them without going down. A session whose address or kind
// changed is replaced. Each session succeeds or fails alone; the error
// joins the failures.
func (s *Server) Set(ctx context.Context, sessions []Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("bfd: set: server closed")
	}
	want := map[string]Session{}
	var errs []error
	for _, ss := range sessions {
		ss.Timers = ss.Timers.WithDefaults()
		err := ss.Timers.Validate()
		if _, dup := want[ss.Name]; dup || ss.Name == "" {
			err = errors.New("empty or duplicate name")
		}
		if !ss.Peer.IsValid() {
			err = errors.New("no peer address")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bfd: session %q: %w", ss.Name, err))
			continue
		}
		want[ss.Name] = ss
	}
	for name, r := range s.byName {
		w, ok := want[name]
		if !ok || w.Peer != r.cfg.Peer || w.Multihop != r.cfg.Multihop || w.Local.IsValid() && w.Local != r.cfg.Local {
			s.remove(r)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w := want[name]
		if r, ok := s.byName[name]; ok {
			if r.cfg.Timers != w.Timers {
				r.cfg.Timers = w.Timers
				s.sched.schedule(r, r.step(func(m *Machine, now time.Time) Output { return m.SetTimers(now, w.Timers) }))
			}
			continue
		}
		if err := s.add(w); err != nil {
			errs = append(errs, fmt.Errorf("bfd: session %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// add starts a session; s.mu is held.
func (s *Server) add(cfg Session) error {
	snd, local, err := s.opts.Transport.Open(cfg.Local, cfg.Peer, cfg.Multihop)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	cfg.Local = local
	if other, ok := s.byKey[cfg.key()]; ok {
		snd.Close()
		return fmt.Errorf("%v to %v is already session %q", local, cfg.Peer, other.cfg.Name)
	}
	discr := s.newDiscr()
	now := time.Now()
	r := &runner{
		cfg:   cfg,
		m:     NewMachine(now, discr, cfg.Timers, mrand.Float64),
		send:  snd,
		log:   s.log.WithValues("session", cfg.Name, "peer", cfg.Peer),
		note:  s.note,
		index: -1,
	}
	s.byName[cfg.Name], s.byDiscr[discr], s.byKey[cfg.key()] = r, r, r
	r.log.V(1).Info("BFD session added", "local", local, "multihop", cfg.Multihop, "discriminator", discr)
	s.sched.schedule(r, now)
	return nil
}

// remove stops r, which sends AdminDown for a while in the background;
// s.mu is held.
func (s *Server) remove(r *runner) {
	delete(s.byName, r.cfg.Name)
	delete(s.byDiscr, r.m.LocalDiscr())
	delete(s.byKey, r.cfg.key())
	r.log.V(1).Info("BFD session removed")
	s.draining.Add(1)
	go func() {
		defer s.draining.Done()
		r.shutdown()
	}()
}

// newDiscr returns a random discriminator, non-zero and unused.
func (s *Server) newDiscr() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		d := binary.BigEndian.Uint32(b[:])
		if _, used := s.byDiscr[d]; d != 0 && !used {
			return d
		}
	}
}

// deliver hands a received packet to its session (§6.8.6: by Your
// Discriminator, else by the addresses) and processes it there, on the
// transport's goroutine; it drops what matches no session.
func (s *Server) deliver(rcv Received) {
	p, err := Unmarshal(rcv.Data)
	if err != nil {
		return
	}
	s.mu.Lock()
	var r *runner
	if p.YourDiscr != 0 {
		r = s.byDiscr[p.YourDiscr]
	} else {
		r = s.byKey[key{rcv.From, rcv.To, rcv.Multihop}]
	}
	s.mu.Unlock()
	if r == nil || r.cfg.Peer != rcv.From || r.cfg.Multihop != rcv.Multihop {
		return
	}
	s.sched.schedule(r, r.step(func(m *Machine, now time.Time) Output { return m.Receive(now, p) }))
}

// SessionStatus is a session's state, for reports.
type SessionStatus struct {
	Name     string
	Peer     netip.Addr
	Local    netip.Addr
	Multihop bool
	Status
}

// Status returns every session's state, by name.
func (s *Server) Status() []SessionStatus {
	s.mu.Lock()
	rs := make([]*runner, 0, len(s.byName))
	for _, r := range s.byName {
		rs = append(rs, r)
	}
	s.mu.Unlock()
	out := make([]SessionStatus, 0, len(rs))
	for _, r := range rs {
		out = append(out, SessionStatus{Name: r.cfg.Name, Peer: r.cfg.Peer, Local: r.cfg.Local, Multihop: r.cfg.Multihop, Status: r.status()})
	}
	slices.SortFunc(out, func(a, b SessionStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close removes every session (sending AdminDown), waits for them to end
// or for ctx, and closes the transport.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, r := range s.byName {
		s.remove(r)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.draining.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.sched.close()
	s.note.close()
	return s.opts.Transport.Close()
}
