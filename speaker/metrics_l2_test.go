package speaker

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthlb/berth/l2"
)

// fakeL2Counters are fixed layer-2 counters.
type fakeL2Counters struct {
	r l2.Rejected
	s l2.Summaries
}

func (f fakeL2Counters) Rejected() l2.Rejected   { return f.r }
func (f fakeL2Counters) Summaries() l2.Summaries { return f.s }

func TestL2Collector(t *testing.T) {
	c := newL2Collector()
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("%d series without a membership", n)
	}
	c.watch(fakeL2Counters{
		r: l2.Rejected{UnknownVersion: 1, Replayed: 2, OldEpoch: 3, Malformed: 4, StreamsRefused: 5, StreamsTruncated: 6},
		s: l2.Summaries{SentWhole: 7, SentDelta: 8, ReadWhole: 9, ReadDelta: 10, Unreadable: 11},
	})
	want := `
# HELP berth_speaker_l2_heartbeats_rejected_total Layer-2 heartbeats and membership streams this node received and did not use, by reason: unknown_version (a rollout across heartbeat versions: the versions do not hear each other), replayed and old_epoch (duplicated or replayed packets), malformed, streams_refused and streams_truncated (an attack on the membership port, or a cluster far larger than expected).
# TYPE berth_speaker_l2_heartbeats_rejected_total counter
berth_speaker_l2_heartbeats_rejected_total{reason="malformed"} 4
berth_speaker_l2_heartbeats_rejected_total{reason="old_epoch"} 3
berth_speaker_l2_heartbeats_rejected_total{reason="replayed"} 2
berth_speaker_l2_heartbeats_rejected_total{reason="streams_refused"} 5
berth_speaker_l2_heartbeats_rejected_total{reason="streams_truncated"} 6
berth_speaker_l2_heartbeats_rejected_total{reason="unknown_version"} 1
# HELP berth_speaker_l2_summaries_received_total Voters' summaries this node received: whole, as deltas, or unreadable (another known membership, or a delta against one it does not have; a few whenever the membership changes).
# TYPE berth_speaker_l2_summaries_received_total counter
berth_speaker_l2_summaries_received_total{form="delta"} 10
berth_speaker_l2_summaries_received_total{form="unreadable"} 11
berth_speaker_l2_summaries_received_total{form="whole"} 9
# HELP berth_speaker_l2_summaries_sent_total Summaries of every speaker heard that this node sent as a voter, whole or as deltas against one the recipient read.
# TYPE berth_speaker_l2_summaries_sent_total counter
berth_speaker_l2_summaries_sent_total{form="delta"} 8
berth_speaker_l2_summaries_sent_total{form="whole"} 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	c.watch(nil)
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("%d series after the membership stopped", n)
	}
}
