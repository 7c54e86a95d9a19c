package l2

import "time"

// The first record. Before any record exists every node votes, unnamed,
// and heartbeats every other with the full list of what it heard: n×(n−1)
// heartbeats an interval, each of them several packets in a large
// cluster. A cluster that starts from nothing (Berth installed on a few
// hundred nodes at once) would run so until a node held a lease under
// that full mesh and settled, which needs a majority of every node's
// known membership to keep up with it.
//
// With firstRecord (the speaker with voters, the record and shrinking
// on, its default), a node holds no lease while no record exists, and
// says so in its heartbeats (flagWaitFirst). A node that has waited so
// for DeadAfter since it could hear the others (so that it heard every
// node that heartbeats it), hears one, and never heard a node that does
// not, may write the first record (revision 1) without a lease, naming the voters
// at once (NextRecord): as nobody holds
// a lease under revision 0, no lease's majority has to intersect the new
// voter set, so no joint step is needed. The API server lets one such
// write through (the record is created only if absent).
//
// A node that waits sends heartbeats without reports: nobody it hears
// holds a lease, so there is nothing to echo or report, and each is one
// small packet however large the cluster.
//
// A node that hears a node that does not wait, under no record (a
// speaker of an earlier build, or one run with --l2-voters=false), stops
// waiting for good: it holds leases under revision 0 as before and
// clears the flag, and the first record is then written through the joint
// steps by a node that holds its lease, as without firstRecord. A node
// that stops waiting holds a lease only after the hold-down, and says so
// from its next heartbeat on, so a writer that heard only nodes that wait
// for DeadAfter heard none that could hold a lease (see docs/layer2.md,
// "The first record").

// waitFirst says this node waits for the first record: with firstRecord,
// while it follows no record and never heard a node that does not wait.
func (l *liveness) waitFirst() bool {
	return l.firstRecord && !l.legacy && l.rec.Rev == 0 && !l.heardNoWait
}

// updateWaitSince sets, at now, since when this node waits for the first
// record while able to hear the others (it knows there is no record, and
// met a peer if it was given some); zero when it does not.
func (l *liveness) updateWaitSince(now time.Time) {
	switch {
	case !l.waitFirst() || !l.recKnown || l.needContact && !l.contacted:
		l.waitSince = time.Time{}
	case l.waitSince.IsZero():
		l.waitSince = now
	}
}

// mayWriteFirst says this node may write the first record without a
// lease at now: it has waited for it for dead while able to hear the
// others, and, given peers, heard one within dead (a node that hears no
// speaker does not name the voters for all).
func (l *liveness) mayWriteFirst(now time.Time) bool {
	if !l.waitFirst() || l.left || l.waitSince.IsZero() || now.Sub(l.waitSince) < l.t.dead {
		return false
	}
	if !l.needContact {
		return true
	}
	for _, p := range l.nodes {
		if !p.recvAt.IsZero() && now.Sub(p.recvAt) < l.t.dead {
			return true
		}
	}
	return false
}
