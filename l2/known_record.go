package l2

import (
	"slices"
	"time"
)

// A speaker that restarts learns the known membership from the speakers it
// meets (known.go); when every speaker of one side of a split restarts,
// it meets none that knows the other side, and that side counts a smaller
// membership and serves beside the other (TestLivenessSideRestartsDuringSplit).
// So the known membership is also kept in the API server, with the
// membership record that a speaker reads before it holds a lease anyway:
// the speaker learns the stored list (Members.Learn, the same path as a
// state exchange, which skips the nodes it forgot on purpose) before it
// hands over the record (SetRecord), and quorate speakers add the nodes
// they met to it (NextKnown).

// NextKnown returns the known list to store in place of stored (as last
// read): stored and this node's known membership together, less the nodes
// that are not in nodes (the names of the Nodes that exist), sorted; and
// whether it differs from stored. A node is dropped only when its Node was
// deleted, which is when the speakers forget it (Members.Forget). Without
// nodes (the Node list not read yet) it changes nothing.
//
// Who writes it costs nothing in safety: a name added is one more member
// for a restarted speaker to count, which can cost it a lease, never give
// it one. The speaker lets one node per side write (the one that holds
// its lease and comes first of its live nodes), to spare the API server
// competing writes.
func NextKnown(stored, known, nodes []string) ([]string, bool) {
	if len(nodes) == 0 {
		return stored, false
	}
	var next []string
	for _, n := range slices.Concat(stored, known) {
		if slices.Contains(nodes, n) {
			next = append(next, n)
		}
	}
	slices.Sort(next)
	next = slices.Compact(next)
	return next, !slices.Equal(next, stored)
}

// Learn adds to the known membership the nodes of the known list stored
// with the membership record, except those this node forgot on purpose,
// as a state exchange does (see learn). A speaker calls it with the list
// it read before it hands over the record with SetRecord, so that it
// counts them before it can hold a lease.
func (m *Members) Learn(names []string) {
	m.learn(names, "the known list in the membership record")
}

// learn is liveness.learn under the lock, logging the known membership
// when it grew, with where the names came from.
func (m *Members) learn(names []string, from string) {
	m.mu.Lock()
	added := m.live.learn(time.Now(), names)
	var known []string
	if added {
		known = m.live.knownNodes()
	}
	m.mu.Unlock()
	if added {
		m.log.Info("Learned speakers", "from", from, "known", known)
		m.notify()
	}
}
