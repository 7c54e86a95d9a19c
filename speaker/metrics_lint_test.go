package speaker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/l2"
)

// TestMetricsLint fills every speaker metric and runs the Prometheus
// linter over what the registry exposes (counters end in _total, units,
// help), and checks that a peer's series go away with the peer and that
// the UPDATE counter keeps counting across a session restart.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.observeSync(&Plan{}, 0)
	m.observeForwarding(nil)
	m.observeL2(1, 3, true)
	m.observeRecord(l2.MemberRecord{Rev: 1, Joint: true, NextOut: []string{"c"}, Voters: []string{"a"}}, "a")
	m.observeSyncResult(nil)
	m.drifts.Inc()
	m.l2Changes.Inc()
	m.l2Counts.watch(fakeL2Counters{})
	steps := []struct {
		name    string
		st      []bgp.PeerStatus
		updates map[string]float64 // berth_speaker_bgp_updates_sent_total by peer; absent: no series
	}{
		{"two peers", []bgp.PeerStatus{
			{Name: "a", State: bgp.StateEstablished, UpdatesSent: 5, LastError: "hold timer expired"},
			{Name: "b", State: bgp.StateActive, UpdatesSent: 2},
		}, map[string]float64{"a": 5, "b": 2}},
		{"a's session restarted", []bgp.PeerStatus{
			{Name: "a", State: bgp.StateEstablished, UpdatesSent: 3, Flaps: 1},
			{Name: "b", State: bgp.StateActive, UpdatesSent: 4},
		}, map[string]float64{"a": 8, "b": 4}},
		{"b removed", []bgp.PeerStatus{
			{Name: "a", State: bgp.StateEstablished, UpdatesSent: 3, Flaps: 1},
		}, map[string]float64{"a": 8}},
	}
	for _, s := range steps {
		m.observeBGP(s.st)
		for _, peer := range []string{"a", "b"} {
			want, ok := s.updates[peer]
			n := testutil.CollectAndCount(m.updatesSent)
			if !ok {
				if n != len(s.updates) {
					t.Errorf("%s: %d updates series, want %d (peer %s's left behind)", s.name, n, len(s.updates), peer)
				}
				for _, c := range []prometheus.Collector{m.sessionUp, m.prefixesSent, m.sessionError, m.flaps} {
					if got := testutil.CollectAndCount(c); got != len(s.updates) {
						t.Errorf("%s: %d series in a per-peer metric, want %d", s.name, got, len(s.updates))
					}
				}
				continue
			}
			if got := testutil.ToFloat64(m.updatesSent.WithLabelValues(peer)); got != want {
				t.Errorf("%s: berth_speaker_bgp_updates_sent_total{peer=%s} = %v, want %v", s.name, peer, got, want)
			}
		}
	}
	q := m.queues.NewDepthMetric("speaker")
	q.Inc()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
