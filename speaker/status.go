package speaker

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
)

// sessionStatus turns the BGP back end's view of a peer into the API's,
// keeping the previous establishedSince unless the session re-established,
// so that a steady session causes no writes.
func sessionStatus(p bgp.PeerStatus, prev *v1alpha1.BerthBGPSession, now time.Time) *v1alpha1.BerthBGPSession {
	st := &v1alpha1.BerthBGPSession{
		Peer:             p.Name,
		State:            string(p.State),
		PrefixesSent:     int32(min(p.PrefixesSent, 1<<31-1)),
		PrefixesReceived: int32(min(p.PrefixesReceived, 1<<31-1)),
		LastError:        p.LastError,
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

// ConditionConfigured is the type of a node's condition of a peer
// (v1alpha1.PeerConditionConfigured).
const ConditionConfigured = v1alpha1.PeerConditionConfigured

// Reasons of ConditionConfigured.
const (
	ReasonApplied    = "Applied"
	ReasonNotApplied = "NotApplied"
)

// configuredCondition is the node's Configured condition for a peer,
// keeping prev's transition time while the status stays the same.
func configuredCondition(cfg peerConfig, prev *v1alpha1.BerthBGPSession, now time.Time) metav1.Condition {
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

func sameSession(a, b *v1alpha1.BerthBGPSession) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !slices.EqualFunc(a.Conditions, b.Conditions, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message &&
			x.ObservedGeneration == y.ObservedGeneration && x.LastTransitionTime.Equal(&y.LastTransitionTime)
	}) {
		return false
	}
	return a.Peer == b.Peer && a.State == b.State && a.PrefixesSent == b.PrefixesSent && a.PrefixesReceived == b.PrefixesReceived && a.LastError == b.LastError &&
		(a.EstablishedSince == nil) == (b.EstablishedSince == nil) &&
		(a.EstablishedSince == nil || a.EstablishedSince.Equal(b.EstablishedSince))
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// sessions turns the back end's view of the peers into the node status's
// sessions, keeping from prev (by peer) what did not change, so that a
// steady session rewrites nothing. configs gives each peer's Configured
// condition; a peer without one gets none.
func sessions(st []bgp.PeerStatus, configs map[string]peerConfig, prev map[string]*v1alpha1.BerthBGPSession, now time.Time) []*v1alpha1.BerthBGPSession {
	out := make([]*v1alpha1.BerthBGPSession, 0, len(st))
	for _, p := range st {
		want := sessionStatus(p, prev[p.Name], now)
		if cfg, ok := configs[p.Name]; ok {
			want.Conditions = []metav1.Condition{configuredCondition(cfg, prev[p.Name], now)}
		}
		if sameSession(want, prev[p.Name]) {
			want = prev[p.Name]
		}
		out = append(out, want)
	}
	slices.SortFunc(out, func(a, b *v1alpha1.BerthBGPSession) int { return strings.Compare(a.Peer, b.Peer) })
	return out
}
