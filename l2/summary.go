package l2

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"time"
)

// A summary is a voter's report of every node it heard, in heartbeat
// version 4: one byte per node of the sender's known membership (itself
// included), sorted by name. 0 means not heard within DeadAfter;
// otherwise the high bit is the Quorate flag of the node's newest
// heartbeat and the rest is 1 plus how long before sending the voter
// received it, in summaryAgeUnit, rounded down (so the receiver's estimate
// of when the node was alive errs towards "alive", the safe side). The
// sender's membership is named by its digest: a receiver reads a summary
// only when the digest is that of its own known membership, and otherwise
// ignores the whole message's echo too, since an echo counts only with
// the report that travels with it (see liveness.use). A voter sends a
// summary only to a node that announced the same digest, and only when it
// heard no node outside that membership; otherwise it reports by name. To
// a node that reads them, it sends the changes since a summary the node
// read instead, with ages that may err towards "alive" by a little more
// (summary_delta.go).
const (
	summaryAgeUnit = 8 * time.Millisecond
	summaryQuorate = 0x80
	summaryMaxAge  = 0x7f
)

// membershipDigest returns the digest of the sorted names.
func membershipDigest(sorted []string) uint64 {
	h := fnv.New64a()
	for _, n := range sorted {
		h.Write(binary.AppendUvarint(nil, uint64(len(n))))
		h.Write([]byte(n))
	}
	return h.Sum64()
}

// membership returns the sorted known membership and its digest.
func (l *liveness) membership() ([]string, uint64) {
	if l.stale || l.list == nil {
		l.list = l.knownNodes()
		l.digest = membershipDigest(l.list)
		l.stale = false
	}
	return l.list, l.digest
}

// report is what a summary says of one node: how long before sending
// the voter received its newest heartbeat (negative: not within
// DeadAfter), and that heartbeat's Quorate flag.
type report struct {
	age     time.Duration
	quorate bool
}

// reports returns what this node's summary with hb at now says of each
// node of its known membership, or nil when it reports by name: it is not
// a voter under explicit voters, hb is a goodbye, the membership is too
// large for one message, or it heard a node outside its known membership.
func (l *liveness) reports(now time.Time, hb heartbeat) []report {
	list, _ := l.membership()
	if hb.Bye || !l.rec.hasVoters() || !l.isVoter() || len(list) > maxHeard {
		return nil
	}
	for _, h := range hb.Heard {
		if _, ok := slices.BinarySearch(list, h.Node); !ok && l.broken != brokenUnknownInSummary {
			return nil
		}
	}
	rs := make([]report, len(list))
	for i, n := range list {
		rs[i].age = -1
		p := l.nodes[n]
		if n == l.self || p == nil || p.recvAt.IsZero() || now.Sub(p.recvAt) >= l.t.dead {
			continue
		}
		rs[i] = report{age: now.Sub(p.recvAt), quorate: p.quorate}
	}
	return rs
}

// summaryByte encodes r, saying slack units younger than it is (never
// older: the receiver's estimate errs towards "alive").
func summaryByte(r report, slack int) byte {
	if r.age < 0 {
		return 0
	}
	b := byte(1 + min(max(int(r.age/summaryAgeUnit)-slack, 0), summaryMaxAge-1))
	if r.quorate {
		b |= summaryQuorate
	}
	return b
}

// summaryBytes encodes rs without slack, as sent to a node that does not
// read deltas.
func summaryBytes(rs []report) []byte {
	sum := make([]byte, len(rs))
	for i, r := range rs {
		sum[i] = summaryByte(r, 0)
	}
	return sum
}

// useSummary takes in a summary received at now in a message whose digest
// is this node's own, and reports whether the set of alive nodes changed.
func (l *liveness) useSummary(now time.Time, sum []byte) bool {
	list, _ := l.membership()
	changed := false
	for i, b := range sum {
		n := list[i]
		if b == 0 || n == l.self {
			continue
		}
		q := l.peer(n)
		was := l.isAlive(q, now)
		age := time.Duration(b&summaryMaxAge-1) * summaryAgeUnit
		l.reported(q, now.Add(-age), b&summaryQuorate != 0)
		changed = changed || was != l.isAlive(q, now)
	}
	return changed
}

// reported records a summary's evidence that p was alive at at, with the
// Quorate flag quorate. A summary names no epoch or stamp, so the flag is
// taken when the evidence is at least as new as any before, by time.
func (l *liveness) reported(p *peerState, at time.Time, quorate bool) {
	if !at.Before(p.seen) {
		p.viable, p.flagEpoch, p.flagStamp = quorate, 0, 0
		p.seen = at
	}
}
