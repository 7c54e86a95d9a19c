package speaker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/berthlb/berth/bgp"
)

// sessionGrace is how long after the start /readyz waits for BGP sessions
// and the layer-2 membership before it reports ready without them: long
// enough for a router to accept a restarted speaker and for the membership
// to form (a rolling update moves on only then), short enough that a
// router that is down for good, or a missing membership Secret, does not
// stall a rollout.
const sessionGrace = 60 * time.Second

// readiness is what the sync loop tells /readyz. Guarded by its mutex:
// the handler runs on the HTTP server's goroutines.
type readiness struct {
	mu      sync.Mutex
	started time.Time
	synced  bool   // a sync has completed
	syncErr string // the last sync's error, "" if it succeeded
}

func (r *readiness) observe(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.syncErr = err.Error()
		return
	}
	r.synced, r.syncErr = true, ""
}

// readyInput is everything readiness is decided from.
type readyInput struct {
	Synced  bool
	SyncErr string
	WantL2  bool
	L2Up    bool
	// L2Quorate says this node sees a majority of the known speakers;
	// meaningful only with L2Up.
	L2Quorate bool
	Peers     []string // the peers this node's plan configures
	Sessions  []bgp.PeerStatus
	Elapsed   time.Duration // since the speaker started
}

// ready decides readiness: the last sync applied everything (BGP peers and
// routes, layer 2, forwarding: a forwarding failure fails the sync), a
// running layer-2 membership is quorate, and, until sessionGrace after the start,
// the layer-2 membership runs (when layer 2 is on) and every BGP session
// the plan configures is Established. nil means ready; the error
// says what is missing.
func ready(in readyInput) error {
	switch {
	case in.SyncErr != "":
		return fmt.Errorf("the last sync failed: %s", in.SyncErr)
	case !in.Synced:
		return fmt.Errorf("no sync has completed yet")
	case in.WantL2 && in.L2Up && !in.L2Quorate:
		// Not bounded by sessionGrace: while the membership has lost its
		// majority a rolling update must not take more speakers away.
		return fmt.Errorf("the layer-2 membership has no quorum: this node sees a minority of the speakers and answers ARP/NDP for nothing")
	case in.Elapsed >= sessionGrace:
		return nil
	case in.WantL2 && !in.L2Up:
		return fmt.Errorf("the layer-2 membership has not started yet (ready anyway %s after the start)", sessionGrace)
	}
	state := map[string]bgp.SessionState{}
	for _, st := range in.Sessions {
		state[st.Name] = st.State
	}
	var down []string
	for _, p := range in.Peers {
		if state[p] != bgp.StateEstablished {
			down = append(down, fmt.Sprintf("%s (%s)", p, or(string(state[p]), "not started")))
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("BGP sessions not established yet (ready anyway %s after the start): %s", sessionGrace, strings.Join(down, ", "))
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Ready reports nil once this node serves what it was configured to, for
// /readyz (see ready).
func (s *Speaker) Ready(ctx context.Context) error {
	s.readiness.mu.Lock()
	in := readyInput{Synced: s.readiness.synced, SyncErr: s.readiness.syncErr, Elapsed: time.Since(s.readiness.started)}
	s.readiness.mu.Unlock()
	s.mu.Lock()
	in.WantL2, in.L2Up = s.wantL2, s.l2 != nil
	if s.l2 != nil {
		_, in.L2Quorate = s.l2.members.Lease()
	}
	if s.lastPlan != nil {
		for _, p := range s.lastPlan.Peers {
			in.Peers = append(in.Peers, p.Name)
		}
	}
	s.mu.Unlock()
	if s.bgp != nil && len(in.Peers) > 0 && in.Elapsed < sessionGrace {
		st, err := s.bgp.Status(ctx)
		if err != nil {
			return fmt.Errorf("read BGP status: %w", err)
		}
		in.Sessions = st
	}
	return ready(in)
}

// syncStallLimit is how long one sync may run before /healthz fails and
// the kubelet restarts the speaker: a sync applies differences locally
// (netlink, nftables, GoBGP) and reads Secrets with a timeout, so it takes
// milliseconds; minutes mean it is stuck.
const syncStallLimit = 3 * time.Minute

// Healthy fails while a sync is stuck (see syncStallLimit), for /healthz.
func (s *Speaker) Healthy(context.Context) error { return s.stall.Check() }
