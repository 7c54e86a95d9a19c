package speaker

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthlb/berth/l2"
)

// l2Counters is what the layer-2 membership counts (l2.Members).
type l2Counters interface {
	Rejected() l2.Rejected
	Summaries() l2.Summaries
}

// l2Collector exposes the counters of the running layer-2 membership, read
// at each scrape; it exposes nothing while there is none.
type l2Collector struct {
	mu  sync.Mutex
	src l2Counters

	rejected, sent, received *prometheus.Desc
}

func newL2Collector() *l2Collector {
	return &l2Collector{
		rejected: prometheus.NewDesc("berth_speaker_l2_heartbeats_rejected_total",
			"Layer-2 heartbeats and membership streams this node received and did not use, by reason: unknown_version (a rollout across heartbeat versions: the versions do not hear each other), replayed and old_epoch (duplicated or replayed packets), malformed, streams_refused and streams_truncated (an attack on the membership port, or a cluster far larger than expected).",
			[]string{"reason"}, nil),
		sent: prometheus.NewDesc("berth_speaker_l2_summaries_sent_total",
			"Summaries of every speaker heard that this node sent as a voter, whole or as deltas against one the recipient read.",
			[]string{"form"}, nil),
		received: prometheus.NewDesc("berth_speaker_l2_summaries_received_total",
			"Voters' summaries this node received: whole, as deltas, or unreadable (another known membership, or a delta against one it does not have; a few whenever the membership changes).",
			[]string{"form"}, nil),
	}
}

// watch makes the collector read src from now on (nil: nothing).
func (c *l2Collector) watch(src l2Counters) {
	c.mu.Lock()
	c.src = src
	c.mu.Unlock()
}

func (c *l2Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rejected
	ch <- c.sent
	ch <- c.received
}

func (c *l2Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src := c.src
	c.mu.Unlock()
	if src == nil {
		return
	}
	r, s := src.Rejected(), src.Summaries()
	counters := []struct {
		desc  *prometheus.Desc
		label string
		n     uint64
	}{
		{c.rejected, "unknown_version", r.UnknownVersion},
		{c.rejected, "replayed", r.Replayed},
		{c.rejected, "old_epoch", r.OldEpoch},
		{c.rejected, "malformed", r.Malformed},
		{c.rejected, "streams_refused", r.StreamsRefused},
		{c.rejected, "streams_truncated", r.StreamsTruncated},
		{c.sent, "whole", s.SentWhole},
		{c.sent, "delta", s.SentDelta},
		{c.received, "whole", s.ReadWhole},
		{c.received, "delta", s.ReadDelta},
		{c.received, "unreadable", s.Unreadable},
	}
	for _, x := range counters {
		ch <- prometheus.MustNewConstMetric(x.desc, prometheus.CounterValue, float64(x.n), x.label)
	}
}
