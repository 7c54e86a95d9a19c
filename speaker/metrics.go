package speaker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthlb/berth/bgp"
)

// Metrics are the speaker's Prometheus metrics, in a registry the caller
// owns.
type Metrics struct {
	sessionUp    *prometheus.GaugeVec
	prefixesSent *prometheus.GaugeVec
	updatesSent  *prometheus.GaugeVec
	lastError    *prometheus.GaugeVec
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
	// statusWrites and withheld: see nodestatus.go and withhold.go.
	statusWrites prometheus.Counter
	withheld     prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_session_up", Help: "1 while the BGP session with the peer is Established.",
		}, []string{"peer"}),
		prefixesSent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_prefixes_sent", Help: "Prefixes announced to the peer.",
		}, []string{"peer"}),
		updatesSent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_updates_sent", Help: "BGP UPDATE messages sent to the peer since the session started.",
		}, []string{"peer"}),
		lastError: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_speaker_bgp_last_error_info", Help: "The last error of the session with the peer, as a label; 1 while there is one.",
		}, []string{"peer", "error"}),
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
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_speaker_node_status_writes_total", Help: "Writes of this node's BerthNodeStatus.",
		}),
		withheld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_speaker_addresses_withheld", Help: "Addresses this node does not announce because their forwarding is not in place.",
		}),
	}
	reg.MustRegister(m.statusWrites, m.withheld)
	reg.MustRegister(m.sessionUp, m.prefixesSent, m.updatesSent, m.lastError, m.announced, m.forwarded, m.syncs, m.drifts,
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

func (m *Metrics) observeBGP(st []bgp.PeerStatus) {
	m.lastError.Reset()
	for _, p := range st {
		up := 0.0
		if p.State == bgp.StateEstablished {
			up = 1
		}
		m.sessionUp.WithLabelValues(p.Name).Set(up)
		m.prefixesSent.WithLabelValues(p.Name).Set(float64(p.PrefixesSent))
		m.updatesSent.WithLabelValues(p.Name).Set(float64(p.UpdatesSent))
		if p.LastError != "" {
			m.lastError.WithLabelValues(p.Name, p.LastError).Set(1)
		}
	}
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
