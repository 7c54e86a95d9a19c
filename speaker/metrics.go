package speaker

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthlb/berth/bgp"
	"github.com/berthlb/berth/internal/metrics"
	"github.com/berthlb/berth/l2"
)

// Metrics are the speaker's Prometheus metrics, in a registry the caller
// owns.
type Metrics struct {
	queues       *metrics.WorkqueueProvider
	sessionUp    *prometheus.GaugeVec
	prefixesSent *prometheus.GaugeVec
	updatesSent  *prometheus.CounterVec
	flaps        *prometheus.CounterVec
	sessionError *prometheus.GaugeVec
	syncErrors   prometheus.Counter
	announced    prometheus.Gauge
	forwarded    prometheus.Gauge
	syncs        prometheus.Histogram
	drifts       prometheus.Counter
	fwdFailing   prometheus.Gauge
	fwdErrors    prometheus.Counter
	l2Owned      prometheus.Gauge
	l2Changes    prometheus.Counter
	l2Members    prometheus.Gauge
	l2Quorate    prometheus.Gauge
	// l2Rev, l2Joint, l2Out and l2Voters describe the membership record
	// this node follows (see l2record.go); l2Voter whether it votes.
	l2Rev    prometheus.Gauge
	l2Joint  prometheus.Gauge
	l2Out    prometheus.Gauge
	l2Voters prometheus.Gauge
	l2Voter  prometheus.Gauge
	// l2Counts reads the running membership's counters (metrics_l2.go).
	l2Counts *l2Collector

	// bgpMu guards the per-peer counters' last readings: the session's
	// own counts restart with the session (or the peer's reconfiguration),
	// the exported counters must not.
	bgpMu   sync.Mutex
	bgpSeen map[string]peerCounts
	// statusWrites and withheld: see nodestatus.go and withhold.go.
	statusWrites prometheus.Counter
	withheld     prometheus.Gauge
}

// peerCounts are a peer's cumulative counts as the BGP back end last
// reported them.
type peerCounts struct{ updates, flaps uint64 }

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		queues:  metrics.NewWorkqueueProvider(reg),
		bgpSeen: map[string]peerCounts{},
		sessionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_session_up", Help: "1 while the BGP session with the peer is Established.",
		}, []string{"peer"}),
		prefixesSent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_prefixes_sent", Help: "Prefixes announced to the peer.",
		}, []string{"peer"}),
		updatesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_speaker_bgp_updates_sent_total", Help: "BGP UPDATE messages sent to the peer.",
		}, []string{"peer"}),
		flaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_speaker_bgp_session_flaps_total", Help: "Times the BGP session with the peer went down from Established.",
		}, []string{"peer"}),
		sessionError: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_session_error",
			Help: "1 while the session with the peer has a last error (its text is in the BerthBGPPeer's status and the speaker's log).",
		}, []string{"peer"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_speaker_sync_errors_total", Help: "Syncs of the node's plan that failed and are retried.",
		}),
		announced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_routes_planned", Help: "Routes this node plans to announce, summed over peers.",
		}),
		forwarded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_forwarding_rules", Help: "Forwarding rules (address, protocol, port) programmed on this node.",
		}),
		syncs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_speaker_sync_duration_seconds", Help: "Time to compute and apply the node's plan.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		drifts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_speaker_forwarding_repairs_total", Help: "Times the forwarding table was found changed by someone else and repaired.",
		}),
		fwdFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_forwarding_failing", Help: "1 while the last attempt to program the forwarding table (nftables) or the drain routes failed.",
		}),
		fwdErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_speaker_forwarding_errors_total", Help: "Failed attempts to program the forwarding table (nftables) or the drain routes.",
		}),
		l2Owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_addresses_owned", Help: "Addresses this node owns and answers ARP/NDP for.",
		}),
		l2Changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_speaker_l2_ownership_changes_total", Help: "Addresses this node started or stopped answering ARP/NDP for.",
		}),
		l2Members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_members", Help: "Live speakers in this node's view of the layer-2 membership, itself included.",
		}),
		l2Quorate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_quorate", Help: "1 while this node sees a majority of the known speakers and may answer on layer 2.",
		}),
		l2Rev: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_record_revision", Help: "Revision of the layer-2 membership record this node follows (0: no record).",
		}),
		l2Joint: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_record_joint", Help: "1 while the membership record this node follows is a joint step (a change of the voter set under way).",
		}),
		l2Out: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_record_nodes_out", Help: "Known speakers that the membership record this node follows leaves out of the quorum.",
		}),
		l2Voters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_record_voters", Help: "Voters the layer-2 membership record this node follows names (0: none named, every known speaker not left out votes).",
		}),
		l2Voter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_l2_voter", Help: "1 while this node votes under the layer-2 membership record it follows: its heartbeats then go to every speaker.",
		}),
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_speaker_node_status_writes_total", Help: "Writes of this node's BerthNodeStatus.",
		}),
		withheld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_addresses_withheld", Help: "Addresses this node does not announce because their forwarding is not in place.",
		}),
	}
	m.l2Counts = newL2Collector()
	reg.MustRegister(m.statusWrites, m.withheld, m.l2Rev, m.l2Joint, m.l2Out, m.l2Voters, m.l2Voter, m.l2Counts)
	reg.MustRegister(m.sessionUp, m.prefixesSent, m.updatesSent, m.flaps, m.sessionError, m.syncErrors, m.announced, m.forwarded, m.syncs, m.drifts,
		m.fwdFailing, m.fwdErrors, m.l2Owned, m.l2Changes, m.l2Members, m.l2Quorate)
	return m
}

func (m *Metrics) observeSync(p *Plan, d time.Duration) {
	n := 0
	for _, r := range p.Routes {
		n += len(r)
	}
	m.announced.Set(float64(n))
	m.forwarded.Set(float64(len(p.Forward)))
	m.syncs.Observe(d.Seconds())
}

// observeForwarding records the outcome of programming the forwarding.
func (m *Metrics) observeForwarding(err error) {
	if err != nil {
		m.fwdFailing.Set(1)
		m.fwdErrors.Inc()
		return
	}
	m.fwdFailing.Set(0)
}

// observeBGP sets the per-peer series from the sessions' status, and
// deletes those of peers no longer configured.
func (m *Metrics) observeBGP(st []bgp.PeerStatus) {
	m.bgpMu.Lock()
	defer m.bgpMu.Unlock()
	seen := make(map[string]peerCounts, len(st))
	for _, p := range st {
		m.sessionUp.WithLabelValues(p.Name).Set(b2f(p.State == bgp.StateEstablished))
		m.prefixesSent.WithLabelValues(p.Name).Set(float64(p.PrefixesSent))
		m.sessionError.WithLabelValues(p.Name).Set(b2f(p.LastError != ""))
		last := m.bgpSeen[p.Name]
		m.updatesSent.WithLabelValues(p.Name).Add(float64(growth(last.updates, p.UpdatesSent)))
		m.flaps.WithLabelValues(p.Name).Add(float64(growth(last.flaps, uint64(p.Flaps))))
		seen[p.Name] = peerCounts{updates: p.UpdatesSent, flaps: uint64(p.Flaps)}
	}
	for name := range m.bgpSeen {
		if _, ok := seen[name]; !ok {
			for _, v := range []interface{ DeleteLabelValues(...string) bool }{m.sessionUp, m.prefixesSent, m.sessionError, m.updatesSent, m.flaps} {
				v.DeleteLabelValues(name)
			}
		}
	}
	m.bgpSeen = seen
}

// growth is how much a cumulative count grew from last to now; a count
// that went down restarted from zero (a new session) and grew by now.
func growth(last, now uint64) uint64 {
	if now < last {
		return now
	}
	return now - last
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *Metrics) observeL2(owned, members int, quorate bool) {
	m.l2Owned.Set(float64(owned))
	m.l2Members.Set(float64(members))
	q := 0.0
	if quorate {
		q = 1
	}
	m.l2Quorate.Set(q)
}

// observeRecord sets the membership record's series from r, the record
// that self follows.
func (m *Metrics) observeRecord(r l2.MemberRecord, self string) {
	m.l2Rev.Set(float64(r.Rev))
	m.l2Joint.Set(b2f(r.Joint))
	m.l2Out.Set(float64(len(r.Out)))
	m.l2Voters.Set(float64(len(r.Voters)))
	m.l2Voter.Set(b2f(r.Votes(self)))
}

// observeSyncResult counts failed syncs.
func (m *Metrics) observeSyncResult(err error) {
	if err != nil {
		m.syncErrors.Inc()
	}
}
