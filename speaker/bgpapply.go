package speaker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/berthlb/berth/bgp"
)

// peerConfig is what this node says about one BerthBGPPeer's configuration in
// its entry of the peer's status (the Configured condition).
type peerConfig struct {
	// generation is the BerthBGPPeer's metadata.generation the node planned
	// from.
	generation int64
	// problem says why the node does not run the peer's current
	// configuration; empty when it does.
	problem string
}

// applyBGP configures the plan's peers and announces their routes, each
// peer, and each address family of a peer, on its own: one that cannot be
// configured keeps the configuration and routes it had (its session is
// not torn down), and the others are applied. It returns what went wrong
// per peer name, and an error when something may succeed if tried again
// (a configuration the back end rejects will not, and is not an error).
// Interface peers first get their address (resolveInterfaces); one whose
// neighbor is not found is a problem, not an error: retryNeighbors looks
// again, so that a node waiting for its router is not a failing sync.
func (s *Speaker) applyBGP(ctx context.Context, plan *Plan) (map[string]string, error) {
	resolve := s.linkLocal
	if resolve == nil {
		resolve = func(string) (netip.Addr, error) {
			return netip.Addr{}, errors.New("interface peers are not supported here")
		}
	}
	s.announceInterfaces(ctx, plan.Peers)
	peers, problems := resolveInterfaces(plan.Peers, s.applied, resolve)
	s.retryNeighbors(ctx, problems)
	// A peer whose configuration broke (its Secret vanished, say) keeps the
	// session it has rather than being torn down.
	kept := map[string]bool{}
	for _, name := range plan.BrokenPeers {
		if old, ok := s.applied[name]; ok {
			peers = append(peers, old)
			kept[name] = true
		}
	}
	var retry []error
	failed := map[string]bool{}
	err := s.bgp.SetPeers(ctx, peers)
	for _, pe := range bgp.PeerErrors(err) {
		failed[pe.Peer] = true
		problems[pe.Peer] = joinProblem(problems[pe.Peer], pe.Err.Error())
		if !bgp.IsInvalid(pe.Err) {
			retry = append(retry, pe)
		}
	}
	if err != nil && len(failed) == 0 {
		return problems, fmt.Errorf("set BGP peers: %w", err)
	}
	// What each peer runs now: the back end left a failed peer as it was.
	applied := make(map[string]bgp.Peer, len(peers))
	for _, p := range peers {
		if !failed[p.Name] {
			applied[p.Name] = p
		} else if old, ok := s.applied[p.Name]; ok {
			applied[p.Name] = old
		}
	}
	s.mu.Lock() // checkNeighbors reads it
	s.applied = applied
	s.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(applied)) {
		if kept[name] {
			continue // the plan has no routes for it: keep announcing what it had
		}
		// A peer the back end rejected still gets the plan's routes on the
		// session it kept.
		for _, pe := range bgp.PeerErrors(s.bgp.Advertise(ctx, name, plan.Routes[name])) {
			problems[name] = joinProblem(problems[name], pe.Error())
			if !bgp.IsInvalid(pe.Err) {
				retry = append(retry, pe)
			}
		}
	}
	if len(retry) > 0 {
		return problems, errors.Join(retry...)
	}
	return problems, nil
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// peerConfigs is this node's view of each BerthBGPPeer that selects it: the
// plan's problem with the peer (a missing Secret, say) and what the back
// end could not apply.
func peerConfigs(snap Snapshot, plan *Plan, applyProblems map[string]string) map[string]peerConfig {
	mine := map[string]bool{}
	for _, p := range plan.Peers {
		mine[p.Name] = true
	}
	for _, n := range plan.BrokenPeers {
		mine[n] = true
	}
	out := make(map[string]peerConfig, len(mine))
	for _, bp := range snap.Peers {
		if !mine[bp.Name] {
			continue
		}
		out[bp.Name] = peerConfig{
			generation: bp.Generation,
			problem:    joinProblem(plan.Problems["BerthBGPPeer/"+bp.Name], applyProblems[bp.Name]),
		}
	}
	return out
}

// reportPeerProblems turns each peer's problem into a Warning Event on the
// BerthBGPPeer (once per change of its text).
func (s *Speaker) reportPeerProblems(ctx context.Context, applyProblems map[string]string) {
	for _, name := range slices.Sorted(maps.Keys(applyProblems)) {
		s.problems.report(ctx, "BerthBGPPeer/"+name, applyProblems[name])
	}
}

// withConfigProblems puts the configuration problem of each peer this node
// could not configure (a missing password Secret, say) into its session's
// last error, adding an Idle session for a peer that has none, so that the
// BerthBGPPeer's status says why this node's session is not what it should be.
func withConfigProblems(st []bgp.PeerStatus, configs map[string]peerConfig) []bgp.PeerStatus {
	out := slices.Clone(st)
	for _, name := range slices.Sorted(maps.Keys(configs)) {
		problem := configs[name].problem
		if problem == "" {
			continue
		}
		i := slices.IndexFunc(out, func(ps bgp.PeerStatus) bool { return ps.Name == name })
		if i < 0 {
			out = append(out, bgp.PeerStatus{Name: name, State: bgp.StateIdle, LastError: problem})
			continue
		}
		out[i].LastError = problem
	}
	return out
}
