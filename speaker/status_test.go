package speaker

import (
	"net/netip"

	"github.com/google/go-cmp/cmp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
)

func TestSessionStatus(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	since := metav1.NewTime(now.Add(-time.Minute))
	tests := []struct {
		name      string
		in        bgp.PeerStatus
		prev      *v1alpha1.BerthBGPSession
		wantSince *metav1.Time
		wantSame  bool
	}{
		{
			name:      "first sight of an established session",
			in:        bgp.PeerStatus{Name: "r", State: bgp.StateEstablished, Uptime: time.Minute, PrefixesSent: 3},
			wantSince: &since,
		},
		{
			name:      "steady session: jitter of the uptime does not change status",
			in:        bgp.PeerStatus{Name: "r", State: bgp.StateEstablished, Uptime: time.Minute + 1500*time.Millisecond, PrefixesSent: 3},
			prev:      &v1alpha1.BerthBGPSession{Peer: "r", State: "Established", PrefixesSent: 3, EstablishedSince: &since},
			wantSince: &since,
			wantSame:  true,
		},
		{
			name:      "a new prefix is a change",
			in:        bgp.PeerStatus{Name: "r", State: bgp.StateEstablished, Uptime: time.Minute, PrefixesSent: 4},
			prev:      &v1alpha1.BerthBGPSession{Peer: "r", State: "Established", PrefixesSent: 3, EstablishedSince: &since},
			wantSince: &since,
		},
		{
			name:      "re-established later moves establishedSince",
			in:        bgp.PeerStatus{Name: "r", State: bgp.StateEstablished, Uptime: 10 * time.Second, PrefixesSent: 3},
			prev:      &v1alpha1.BerthBGPSession{Peer: "r", State: "Established", PrefixesSent: 3, EstablishedSince: &since},
			wantSince: func() *metav1.Time { m := metav1.NewTime(now.Add(-10 * time.Second)); return &m }(),
		},
		{
			name: "down: no establishedSince, the error is kept",
			in:   bgp.PeerStatus{Name: "r", State: bgp.StateActive, LastError: "connection refused"},
			prev: &v1alpha1.BerthBGPSession{Peer: "r", State: "Established", PrefixesSent: 3, EstablishedSince: &since},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sessionStatus(tc.in, tc.prev, now)
			if got.Peer != "r" || got.State != string(tc.in.State) || got.LastError != tc.in.LastError || int(got.PrefixesSent) != int(tc.in.PrefixesSent) {
				t.Errorf("sessionStatus = %+v, does not reflect %+v", got, tc.in)
			}
			if (got.EstablishedSince == nil) != (tc.wantSince == nil) ||
				(got.EstablishedSince != nil && !got.EstablishedSince.Equal(tc.wantSince)) {
				t.Errorf("establishedSince = %v, want %v", got.EstablishedSince, tc.wantSince)
			}
			if same := sameSession(got, tc.prev); same != tc.wantSame {
				t.Errorf("sameSession = %v, want %v", same, tc.wantSame)
			}
		})
	}
}

func TestWithConfigProblems(t *testing.T) {
	configs := map[string]peerConfig{
		"ok":     {generation: 1},
		"locked": {generation: 2, problem: `password Secret "gone" has no key "pw" (or does not exist)`},
		"never":  {generation: 3, problem: `password Secret "x" has no key "password" (or does not exist)`},
	}
	st := []bgp.PeerStatus{
		{Name: "ok", State: bgp.StateEstablished, PrefixesSent: 2},
		{Name: "locked", State: bgp.StateEstablished, PrefixesSent: 1},
	}
	got := withConfigProblems(st, configs)
	want := []bgp.PeerStatus{
		{Name: "ok", State: bgp.StateEstablished, PrefixesSent: 2},
		{Name: "locked", State: bgp.StateEstablished, PrefixesSent: 1, LastError: configs["locked"].problem},
		{Name: "never", State: bgp.StateIdle, LastError: configs["never"].problem},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("withConfigProblems (-want +got):\n%s", diff)
	}
	if st[1].LastError != "" {
		t.Errorf("withConfigProblems changed its input")
	}
}

// TestConfiguredCondition checks the node's Configured condition: False
// with the problem while the node cannot apply the peer, its transition
// time kept while the status does not change, so that a standing problem
// causes no status writes.
func TestConfiguredCondition(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	withCond := func(c metav1.Condition) *v1alpha1.BerthBGPSession {
		return &v1alpha1.BerthBGPSession{Peer: "r", Conditions: []metav1.Condition{c}}
	}
	bad := peerConfig{generation: 4, problem: `password Secret "gone" has no key "password" (or does not exist)`}
	tests := []struct {
		name       string
		cfg        peerConfig
		prev       *v1alpha1.BerthBGPSession
		wantStatus metav1.ConditionStatus
		wantSince  time.Time
		wantSame   bool
	}{
		{name: "configured", cfg: peerConfig{generation: 3}, wantStatus: metav1.ConditionTrue, wantSince: t1},
		{name: "a problem turns it False", cfg: bad,
			prev:       withCond(configuredCondition(peerConfig{generation: 3}, nil, t0)),
			wantStatus: metav1.ConditionFalse, wantSince: t1},
		{name: "a standing problem keeps its time and writes nothing", cfg: bad,
			prev:       withCond(configuredCondition(bad, nil, t0)),
			wantStatus: metav1.ConditionFalse, wantSince: t0, wantSame: true},
		{name: "a new generation with the same problem is a change", cfg: peerConfig{generation: 5, problem: bad.problem},
			prev:       withCond(configuredCondition(bad, nil, t0)),
			wantStatus: metav1.ConditionFalse, wantSince: t0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := configuredCondition(tc.cfg, tc.prev, t1)
			if c.Status != tc.wantStatus || !c.LastTransitionTime.Time.Equal(tc.wantSince) || c.ObservedGeneration != tc.cfg.generation {
				t.Errorf("condition %+v, want status %s since %v, generation %d", c, tc.wantStatus, tc.wantSince, tc.cfg.generation)
			}
			if tc.cfg.problem != "" && !strings.Contains(c.Message, tc.cfg.problem) {
				t.Errorf("message %q does not name the problem", c.Message)
			}
			if tc.prev != nil {
				if same := sameSession(withCond(c), tc.prev); same != tc.wantSame {
					t.Errorf("sameSession = %v, want %v", same, tc.wantSame)
				}
			}
		})
	}
}
