package speaker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
)

// peerStatusWriter applies this node's entry in a BGPPeer's status.
type peerStatusWriter interface {
	// applyPeerStatus writes the node's session; nil removes the node's
	// entry (the node no longer peers with it).
	applyPeerStatus(ctx context.Context, peer string, st *v1alpha1.BGPSessionStatus) error
}

// apiPeerStatus writes BGPPeer status by server-side apply. Each speaker
// has its own field manager and applies only its node's entry of the
// status.nodes map, so speakers never overwrite each other.
type apiPeerStatus struct {
	client versioned.Interface
	node   string
}

func (a *apiPeerStatus) applyPeerStatus(ctx context.Context, peer string, st *v1alpha1.BGPSessionStatus) error {
	status := berthac.BGPPeerStatus()
	if st != nil {
		s := berthac.BGPSessionStatus().WithNode(a.node).WithState(st.State).WithPrefixesSent(st.PrefixesSent)
		if st.EstablishedSince != nil {
			s.WithEstablishedSince(*st.EstablishedSince)
		}
		if st.LastError != "" {
			s.WithLastError(st.LastError)
		}
		for _, c := range st.Conditions {
			s.WithConditions(metav1ac.Condition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).
				WithMessage(c.Message).WithObservedGeneration(c.ObservedGeneration).WithLastTransitionTime(c.LastTransitionTime))
		}
		status.WithNodes(s)
	}
	_, err := a.client.BerthV1alpha1().BGPPeers().ApplyStatus(ctx, berthac.BGPPeer(peer).WithStatus(status),
		metav1.ApplyOptions{FieldManager: "berth-speaker-" + a.node, Force: true})
	if apierrors.IsNotFound(err) {
		return nil // the peer is gone, and with it its status
	}
	if err != nil {
		return fmt.Errorf("apply status of BGPPeer %s: %w", peer, err)
	}
	return nil
}

// sessionStatus turns the BGP back end's view of a peer into the API's,
// keeping the previous establishedSince unless the session re-established,
// so that a steady session causes no writes.
func sessionStatus(node string, p bgp.PeerStatus, prev *v1alpha1.BGPSessionStatus, now time.Time) *v1alpha1.BGPSessionStatus {
	st := &v1alpha1.BGPSessionStatus{
		Node:         node,
		State:        string(p.State),
		PrefixesSent: int32(min(p.PrefixesSent, 1<<31-1)),
		LastError:    p.LastError,
	}
	if p.State == bgp.StateEstablished {
		since := metav1.NewTime(now.Add(-p.Uptime).Truncate(time.Second))
		if prev != nil && prev.EstablishedSince != nil && prev.State == st.State &&
			absDuration(prev.EstablishedSince.Sub(since.Time)) <= 2*time.Second {
			since = *prev.EstablishedSince
		}
		st.EstablishedSince = &since
	}
	return st
}

// ConditionConfigured is the type of a node's condition in its entry of a
// BGPPeer's status: whether the node runs the peer's current
// configuration.
const ConditionConfigured = "Configured"

// Reasons of ConditionConfigured.
const (
	ReasonApplied    = "Applied"
	ReasonNotApplied = "NotApplied"
)

// configuredCondition is the node's Configured condition for a peer,
// keeping prev's transition time while the status stays the same.
func configuredCondition(cfg peerConfig, prev *v1alpha1.BGPSessionStatus, now time.Time) metav1.Condition {
	c := metav1.Condition{
		Type: ConditionConfigured, Status: metav1.ConditionTrue, Reason: ReasonApplied,
		Message:            "this node runs the peer's current configuration",
		ObservedGeneration: cfg.generation,
		LastTransitionTime: metav1.NewTime(now.Truncate(time.Second)),
	}
	if cfg.problem != "" {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonNotApplied
		c.Message = cfg.problem + "; this node keeps the configuration it applied last"
	}
	if prev != nil {
		if old := meta.FindStatusCondition(prev.Conditions, ConditionConfigured); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	return c
}

func sameSession(a, b *v1alpha1.BGPSessionStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !slices.EqualFunc(a.Conditions, b.Conditions, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message &&
			x.ObservedGeneration == y.ObservedGeneration && x.LastTransitionTime.Equal(&y.LastTransitionTime)
	}) {
		return false
	}
	return a.State == b.State && a.PrefixesSent == b.PrefixesSent && a.LastError == b.LastError &&
		(a.EstablishedSince == nil) == (b.EstablishedSince == nil) &&
		(a.EstablishedSince == nil || a.EstablishedSince.Equal(b.EstablishedSince))
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// writePeerStatus applies what changed since the last call and removes the
// node's entry from peers it no longer has. configs gives each peer's
// Configured condition; a peer without one gets none.
func (s *Speaker) writePeerStatus(ctx context.Context, st []bgp.PeerStatus, configs map[string]peerConfig) {
	if s.peerStatus == nil {
		return
	}
	now := time.Now()
	seen := map[string]bool{}
	for _, p := range st {
		seen[p.Name] = true
		want := sessionStatus(s.node, p, s.lastStatus[p.Name], now)
		if cfg, ok := configs[p.Name]; ok {
			want.Conditions = []metav1.Condition{configuredCondition(cfg, s.lastStatus[p.Name], now)}
		}
		if sameSession(want, s.lastStatus[p.Name]) {
			continue
		}
		if err := s.peerStatus.applyPeerStatus(ctx, p.Name, want); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "Write BGPPeer status", "peer", p.Name)
			continue
		}
		s.lastStatus[p.Name] = want
	}
	for name := range s.lastStatus {
		if seen[name] {
			continue
		}
		if err := s.peerStatus.applyPeerStatus(ctx, name, nil); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "Remove node from BGPPeer status", "peer", name)
			continue
		}
		delete(s.lastStatus, name)
	}
}
