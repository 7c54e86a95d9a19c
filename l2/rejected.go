package l2

import (
	"errors"
	"time"
)

// Rejected counts the heartbeats a node received and did not use, by
// cause, and the membership streams it cut short. None of them is normal
// in a cluster that runs one version: UnknownVersion means a mixed-version
// rollout (the two versions do not hear each other), Replayed and OldEpoch
// mean duplicated or replayed packets, Malformed (also counting membership
// state exchanges that do not decode, known.go) a bug or an attack with
// the shared key; StreamsRefused (over the limit of concurrent streams)
// and StreamsTruncated (longer than the limit) mean an attack on the
// membership port, or a cluster far larger than expected.
type Rejected struct {
	UnknownVersion   uint64
	Replayed         uint64
	OldEpoch         uint64
	Malformed        uint64
	StreamsRefused   uint64
	StreamsTruncated uint64
}

// Summaries counts the voters' summaries (summary.go, summary_delta.go)
// this node sent and received, whole or as deltas. Received summaries
// that it could not read (another known membership, or a delta against
// one it does not have) are Unreadable; a few appear whenever the
// membership changes, and their echoes do not count.
type Summaries struct {
	SentWhole, SentDelta             uint64
	ReadWhole, ReadDelta, Unreadable uint64
}

// Summaries returns how many summaries this node sent and received so far.
func (m *Members) Summaries() Summaries {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live.summaries
}

func (r *Rejected) count(d dropReason) {
	switch d {
	case dropReplayed:
		r.Replayed++
	case dropOldEpoch:
		r.OldEpoch++
	}
}

// Rejected returns how many heartbeats this node dropped so far, by cause.
func (m *Members) Rejected() Rejected {
	m.mu.Lock()
	r := m.rejected
	m.mu.Unlock()
	if m.transport != nil {
		r.StreamsRefused = m.transport.refused.Load()
		r.StreamsTruncated = m.transport.truncated.Load()
	}
	return r
}

// newEpoch is the epoch of a node started at now: its wall-clock time, so
// that a restarted node's epoch is greater than its previous one's (see
// replay.go). A node whose clock went back by more than its previous
// run's lifetime is ignored by the others until they forget it or restart,
// and they count it in Rejected.OldEpoch.
func newEpoch(now time.Time) uint64 {
	return uint64(now.UnixNano())
}

// logEvery is how often an unsupported version is logged, at most.
const logEvery = time.Minute

// rejectUndecodable counts a heartbeat that did not decode and logs the
// unsupported versions, once a minute each.
func (m *Members) rejectUndecodable(err error) {
	var ve *versionError
	if !errors.As(err, &ve) {
		m.mu.Lock()
		m.rejected.Malformed++
		m.mu.Unlock()
		return
	}
	now := time.Now()
	m.mu.Lock()
	m.rejected.UnknownVersion++
	last, ok := m.logged[ve.Version]
	log := !ok || now.Sub(last) >= logEvery
	if log {
		m.logged[ve.Version] = now
	}
	m.mu.Unlock()
	if log {
		m.log.Info("Ignoring heartbeats of another protocol version: speakers of different versions do not see each other; finish the rollout",
			"version", ve.Version, "supported", []int{heartbeatVersion2, heartbeatVersion, heartbeatVersion4}, "from", ve.From)
	}
}
